"""`netdef view`'s page in a real browser: Debian's chromium driven by playwright.

Expected values are hand facts, not the page's own data: FCN-8s's pool4 has stride 16 and
offset -91.5 and a 100-pixel field (docs/reference-nets.md); a unit's field is the pixels
offset + i * stride - (size - 1) / 2 ... + (size - 1) / 2, clipped to the image; upscore2's
two phases are derived by hand below. The browser tests skip, saying why, only where
playwright or chromium is not installed (`make test` installs both).
"""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from netdef.view_page import script_json, write_view

from .conftest import BROKEN, CORPUS, ROOT, corpus_files

FCN8S = ROOT / "models" / "fcn8s.prototxt"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                               "(pip install playwright; `make test` does)")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; "
                    "`make test` does)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--no-first-run"])
        yield launched
        launched.close()


class Opened:
    """A page in the browser, with every request it made and every error it logged."""

    def __init__(self, browser, path):
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.requests, self.errors = [], []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: message.type == "error"
                     and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("dialog", lambda dialog: (self.errors.append("dialog: " + dialog.message),
                                               dialog.dismiss()))
        self.page.set_default_timeout(10_000)
        self.url = path.as_uri()
        self.page.goto(self.url)

    def click_node(self, name: str, kind: str) -> str:
        """Bring the node into view as a user would, by searching for it (Esc then closes
        the panel the search opened), and click it."""
        key = self.key_of(name, kind)
        self.page.fill("#search", name)
        self.page.click(f'#results li[data-key="{key}"]')
        self.page.keyboard.press("Escape")
        assert self.page.locator("#panel #problems").count() == 1  # the summary is back
        self.page.click(f"#graph g#{key}")
        return key

    def data(self) -> dict:
        return json.loads(self.page.text_content("#netdef-data"))

    def key_of(self, name: str, kind: str) -> str:
        return next(key for key, entry in self.data()[kind].items() if entry["name"] == name)

    def unit(self, i: int, j: int) -> dict:
        self.page.fill("#unit-i", str(i))
        self.page.fill("#unit-j", str(j))
        return self.rect()

    def rect(self) -> dict:
        rect = self.page.locator("#rf-rect")
        return {name: float(rect.get_attribute(name)) for name in ("x", "y", "width", "height")}

    def clean(self) -> bool:
        return self.errors == [] and set(self.requests) <= {self.url}


@pytest.fixture(scope="module")
def fcn8s_page(tmp_path_factory):
    path = tmp_path_factory.mktemp("view") / "fcn8s.html"
    write_view(str(FCN8S), str(path))
    return path


def every_net() -> list:
    return corpus_files() + sorted((ROOT.parent / "shared" / "corpus-forks").rglob("*.prototxt")) \
        + sorted((ROOT / "models").glob("*.prototxt"))


def page_data(path) -> dict:
    return json.loads(re.search(r'id="netdef-data">(.*?)</script>', path.read_text()).group(1))


def field(size, stride, offset, unit, limit):
    """[from, to) of a unit's field along one axis, clipped to [0, limit]: the hand formula."""
    centre = offset + unit * stride
    return max(0.0, centre - (size - 1) / 2), min(limit, centre + (size - 1) / 2 + 1)


def test_cli_writes_a_small_self_contained_page(cli, tmp_path):
    out = tmp_path / "fcn8s.html"
    code, stdout, _ = cli("view", FCN8S, "-o", out)
    assert code == 0 and f"wrote {out} (49 layers)" in stdout
    text = out.read_text()
    assert out.stat().st_size < 2_000_000
    assert "default-src 'none'" in text  # the browser itself refuses any request
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)


@pytest.mark.slow
def test_fcn8s_page_pool4_and_its_units(browser, fcn8s_page):
    opened = Opened(browser, fcn8s_page)
    page = opened.page
    opened.click_node("pool4", "blobs")
    assert page.text_content("#panel h2") == "pool4"
    assert page.text_content(".rf-stride") == "16" and page.text_content(".rf-offset") == "-91.5"
    assert page.text_content(".rf-size") == "100"
    y, bottom = field(100, 16, -91.5, 10, 500)
    x, right = field(100, 16, -91.5, 20, 500)
    assert opened.unit(10, 20) == {"x": x, "y": y, "width": right - x, "height": bottom - y}
    assert (x, y, right - x) == (179, 19, 100)
    assert opened.unit(3, 3) == {"x": 0, "y": 0, "width": 7, "height": 7}  # clipped
    assert "clipped" in page.text_content("#rf-caption")
    assert opened.unit(0, 0)["width"] == 0  # it sees only FCN's 100-pixel padding
    assert "only padding" in page.text_content("#rf-caption")
    grid = page.locator("#unit-grid").bounding_box()  # 44 x 44 units over the grid's pixels
    page.mouse.move(grid["x"] + (7.5 / 44) * grid["width"], grid["y"] + (30.5 / 44) * grid["height"])
    assert (page.input_value("#unit-i"), page.input_value("#unit-j")) == ("30", "7")
    y, bottom = field(100, 16, -91.5, 30, 500)
    x, right = field(100, 16, -91.5, 7, 500)
    assert opened.rect() == {"x": x, "y": y, "width": right - x, "height": bottom - y}
    assert opened.clean(), (opened.errors, opened.requests)


@pytest.mark.slow
def test_upsampled_blob_honours_its_phases(browser, fcn8s_page):
    """upscore2: a 4-tap, stride-2 deconvolution of score_fr (centres 12.5 + 32 u, field
    404). Output o = 2m + r reads score_fr units m - 1 and m, so it covers 32m - 221 ...
    32m + 214 around its centre -11.5 + 16 o: even rows reach 225.5 below the centre and
    209.5 above it, odd rows the other way round."""
    opened = Opened(browser, fcn8s_page)
    opened.click_node("upscore2", "blobs")

    def expected(unit):
        m = unit // 2
        return max(0, 32 * m - 221), min(500, 32 * m + 214 + 1)
    for i, j in ((5, 6), (6, 5), (8, 9)):
        (y, bottom), (x, right) = expected(i), expected(j)
        assert opened.unit(i, j) == {"x": x, "y": y, "width": right - x, "height": bottom - y}
    assert opened.clean(), opened.errors


@pytest.mark.slow
def test_search_by_name_selects_and_shows_the_layer(browser, fcn8s_page):
    opened = Opened(browser, fcn8s_page)
    page = opened.page
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search"
    page.keyboard.type("score_pool4")
    names = page.locator("#results li > span:first-child").all_text_contents()
    kinds = page.locator("#results li > span.kind").all_text_contents()
    assert names == ["score_pool4"] * 2 + ["score_pool4c"] * 2 + ["upscore_pool4"] * 2
    assert kinds[:2] == ["Convolution", "blob 1×21×44×44"]  # exact, prefix, then inside
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    selected = page.locator("#panel h2").first.text_content()
    assert selected == "score_pool4"
    key = opened.key_of(selected, "layers")
    assert page.get_attribute(f"#graph g#{key}", "class").split() == ["node", "selected"]
    source = page.text_content("#panel pre.source")
    assert f'name: "{selected}"' in source and 'type: "Convolution"' in source
    page.keyboard.press("Escape")
    assert page.text_content("#panel h2") == "FCN-8s"  # Esc: back to the summary
    summary = page.text_content("#panel")
    assert "134M" in summary and "362G" in summary and "468 pixels, at score" in summary
    assert opened.clean(), opened.errors


@pytest.mark.slow
def test_clicking_a_layer_shows_its_story(browser, fcn8s_page):
    opened = Opened(browser, fcn8s_page)
    page = opened.page
    opened.click_node("conv1_1", "layers")
    sections = page.locator("#panel section")
    assert sections.count() == 2  # conv1_1 and relu1_1, folded into its node
    text = sections.first.text_content()
    assert "Convolution" in text and "1×64×698×698" in text  # FCN's pad 100 on 500 x 500
    assert "1.79K" in text  # 64 x 3 x 3 x 3 + 64 learned values
    assert "pad: 100" in page.text_content("#panel pre")
    page.click("#panel section a:text('conv1_1')")  # its top: the blob's panel
    assert page.text_content("#panel .subtitle") == "blob · 1×64×698×698"
    assert opened.clean(), opened.errors


@pytest.mark.slow
def test_net_with_errors_opens_with_its_problems(browser, cli, tmp_path):
    out = tmp_path / "broken.html"
    code, stdout, stderr = cli("view", BROKEN / "missing_bottom.prototxt", "-o", out)
    assert code == 1 and "1 error(s) listed on it" in stdout
    assert "bottom 'conv_1' is not produced" in stderr
    opened = Opened(browser, out)
    page = opened.page
    problems = page.locator("#problems .problem.error")
    assert problems.count() == 1 and "conv_1" in problems.first.text_content()
    relu = opened.key_of("relu1", "layers")
    assert "has-error" in page.get_attribute(f"#graph g#{relu}", "class")
    problems.first.locator("a").click()
    assert page.text_content("#panel h2") == "relu1"
    assert "not produced" in page.text_content("#panel .problem")
    assert opened.clean(), opened.errors


@pytest.mark.slow
def test_file_that_does_not_parse_still_opens(browser, cli, tmp_path):
    net = tmp_path / "cut.prototxt"
    net.write_text('name: "cut"\nlayer { name: "data" type: "Input"\n')
    out = tmp_path / "cut.html"
    code, _, stderr = cli("view", net, "-o", out)
    assert code == 1 and "missing '}'" in stderr
    opened = Opened(browser, out)
    assert "nothing to draw" in opened.page.text_content("#graph")
    assert "missing '}'" in opened.page.text_content("#problems")
    assert opened.clean(), opened.errors


HOSTILE = '</script><script>alert(1)</script><img src="http://example.invalid/x.png" onerror="alert(2)">'


@pytest.mark.slow
def test_names_from_the_file_stay_text(browser, tmp_path):
    net = tmp_path / "hostile.prototxt"
    net.write_text(f'name: "{HOSTILE.replace(chr(34), chr(92) + chr(34))}"\n'
                   'input: "data" input_shape { dim: 1 dim: 1 dim: 8 dim: 8 }\n'
                   f'layer {{ name: "{HOSTILE.replace(chr(34), chr(92) + chr(34))}" '
                   'type: "Pooling" bottom: "data" top: "p" '
                   'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n')
    out = tmp_path / "hostile.html"
    write_view(str(net), str(out))
    opened = Opened(browser, out)
    page = opened.page
    assert page.title().startswith(HOSTILE)
    opened.click_node(HOSTILE, "layers")
    assert page.text_content("#panel h2") == HOSTILE
    assert page.locator("img").count() == 0
    assert opened.clean(), (opened.errors, opened.requests)


@pytest.mark.slow
def test_image_sizes_the_input_and_shows_the_field(browser, cli, tmp_path):
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)).save(photo)
    out = tmp_path / "fcn8s.html"
    code, _, _ = cli("view", FCN8S, "--image", photo, "-o", out)
    assert code == 0
    opened = Opened(browser, out)
    page = opened.page
    assert opened.data()["summary"]["inputs"]["data"] == [1, 3, 120, 160]  # as `run` would
    opened.click_node("pool4", "blobs")
    href = page.get_attribute("#rf-view image", "href")
    assert href.startswith("data:image/png;base64,")
    assert page.get_attribute("#rf-view", "viewBox") == "0 0 160 120"
    y, bottom = field(100, 16, -91.5, 9, 120)
    x, right = field(100, 16, -91.5, 12, 160)
    assert opened.unit(9, 12) == {"x": x, "y": y, "width": right - x, "height": bottom - y}
    assert opened.clean(), opened.errors


def test_weights_statistics_and_where_they_came_from(cli, tmp_path):
    """LeNet with a caffemodel that holds conv1 alone: its blobs' statistics are numpy's,
    every other layer keeps its filler."""
    from netdef.compiler.weights import write_caffemodel

    rng = np.random.default_rng(3)
    weight, bias = rng.standard_normal((20, 1, 5, 5)).astype(np.float32), \
        rng.standard_normal(20).astype(np.float32)
    with open(tmp_path / "w.caffemodel", "wb") as handle:
        write_caffemodel(handle, [("conv1", "Convolution", [weight, bias])])
    lenet = CORPUS / "BVLC+caffe" / "examples" / "mnist" / "lenet.prototxt"
    out = tmp_path / "lenet.html"
    code, _, _ = cli("view", lenet, "--weights", tmp_path / "w.caffemodel", "-o", out)
    assert code == 0
    data = page_data(out)
    layers = {layer["name"]: layer for layer in data["layers"].values()}
    for stats, array in zip(layers["conv1"]["weights"], (weight, bias)):
        assert stats["shape"] == list(array.shape) and stats["source"] == "weights file"
        for key in ("mean", "std", "min", "max"):
            assert stats[key] == pytest.approx(float(getattr(np, key)(array.astype(np.float64))),
                                               rel=1e-6, abs=1e-9)
    assert [s["source"] for s in layers["ip1"]["weights"]] == ["filler", "filler"]
    assert layers["ip1"]["weights"][1]["max"] == 0  # Caffe's default bias filler: constant 0
    assert layers["pool1"]["weights"] is None


def test_script_json_cannot_close_its_element():
    text = script_json({"name": "</script><!-- & -->"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"name": "</script><!-- & -->"}


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["TEST", "TRAIN"])
def test_every_corpus_and_flagship_net_gets_a_page(tmp_path, phase):
    for path in every_net():
        out = tmp_path / "page.html"
        written = write_view(str(path), str(out), phase=phase)
        data = page_data(out)
        assert written.layers == len(data["layers"]) > 0, path
        if not any(not problem.warning for problem in written.problems):
            assert data["svg"] and not data["drawing_problem"], path


@pytest.mark.slow
@pytest.mark.parametrize("path", every_net(), ids=lambda path: f"{path.parent.name}/{path.name}")
def test_every_corpus_page_opens_with_every_node_clickable(browser, tmp_path, path):
    """The page loads without an error or a request, every layer and blob the data names
    is a node of the drawing, and clicking a blob opens its panel."""
    out = tmp_path / "page.html"
    write_view(str(path), str(out))
    opened = Opened(browser, out)
    data = opened.data()
    drawn = set(opened.page.eval_on_selector_all("#graph g.node", "nodes => nodes.map(n => n.id)"))
    assert {layer["node"] for layer in data["layers"].values()} | set(data["blobs"]) <= drawn
    blob = data["blobs"][next(iter(data["blobs"]))]["name"]
    opened.click_node(blob, "blobs")
    assert opened.page.text_content("#panel h2") == blob
    assert opened.clean(), opened.errors
    opened.page.close()
