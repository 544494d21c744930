"""The data behind `netdef view` (issue 19, first part): facts from the flagship FCN-8s
(pool4: stride 16, offset -91.5, as README and the FCN paper's crop arithmetic give), the
layers' source lines read back from the file, and problems attached to their layers."""
from __future__ import annotations

import json

import pytest

from netdef.compiler.analysis import check_net
from netdef.errors import NetdefError
from netdef.view import view_data

from .conftest import CORPUS, ROOT, corpus_files

FCN8S = ROOT / "models" / "fcn8s.prototxt"


def data_of(source, **settings):
    net, problems = check_net(source, **settings)
    text = source.read_text() if hasattr(source, "read_text") else source
    return view_data(net, problems, text)


def blob(data, name):
    return next(entry for entry in data["blobs"].values() if entry["name"] == name)


def layer(data, name):
    return next(entry for entry in data["layers"].values() if entry["name"] == name)


def test_fcn8s_pool4_field_and_phases():
    data = data_of(FCN8S)
    json.dumps(data)  # the page embeds it as JSON
    pool4 = blob(data, "pool4")
    assert pool4["shape"] == [1, 512, 44, 44]  # 500 + 2*100 - 2 = 698 -> 349, 175, 88, 44
    assert pool4["rf"]["data"]["stride"] == [16, 16]
    assert pool4["rf"]["data"]["offset"] == [-91.5, -91.5]
    (axis_h, axis_w) = pool4["maps"]["data"]
    assert axis_h == axis_w and axis_h["stride"] == 16 and axis_h["offset"] == -91.5
    (lo, hi), = axis_h["support"]  # a sliding-window stack: one phase
    assert hi - lo + 1 == pool4["rf"]["data"]["size"][0]
    # upscore2 (stride-2 deconvolution, 4 taps) alternates between phases
    upscore2 = blob(data, "upscore2")
    assert len(upscore2["maps"]["data"][0]["support"]) == 2


def test_layers_carry_their_source_lines_and_graph():
    data = data_of(FCN8S)
    source = data["source"]
    for entry in data["layers"].values():
        first, last = entry["lines"]
        block = source[first - 1:last]
        assert block[0].strip() == "layer {" and block[-1].strip() == "}"
        assert f'name: "{entry["name"]}"' in "\n".join(block)
    conv1 = layer(data, "conv1_1")
    assert "num_output: 64" in conv1["parameters"] and conv1["params"] == 64 * 3 * 9 + 64
    relu = layer(data, "relu1_1")  # in place: drawn as a row of conv1_1's node
    assert relu["node"] == next(k for k, v in data["layers"].items() if v is conv1)
    assert data["blobs"][conv1["tops"][0]]["name"] == "conv1_1"
    summary = data["summary"]
    assert summary["inputs"] == {"data": [1, 3, 500, 500]} and summary["outputs"] == ["score"]
    # fields only grow along a path; score, the last blob, ties the widest and is named
    assert summary["deepest"] == {"blob": "score", "size": blob(data, "score")["rf"]["data"]["size"][0]}
    assert summary["params"] == sum(entry["params"] for entry in data["layers"].values())


def test_problems_are_attached_to_their_layers():
    text = FCN8S.read_text().replace("num_output: 21", "num_output: 0", 1)
    data = data_of(text)
    errors = [p for p in data["problems"] if not p["warning"]]
    assert errors and errors[0]["layer"] is not None
    entry = data["layers"][errors[0]["layer"]]
    assert 0 in entry["problems"] and entry["lines"][0] <= errors[0]["line"] <= entry["lines"][1]


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_every_corpus_and_flagship_net_gives_page_data(phase):
    paths = corpus_files() + sorted((CORPUS.parent / "corpus-forks").rglob("*.prototxt")) \
        + sorted((ROOT / "models").glob("*.prototxt"))
    shown = 0
    for path in paths:
        try:
            net, problems = check_net(path, phase=phase)
        except NetdefError:  # does not parse: the page lists the error alone
            continue
        data = view_data(net, problems, path.read_text())
        assert len(data["layers"]) == len(net.layers)
        json.dumps(data)
        shown += 1
    assert shown >= len(paths) - 2


def test_page_keys_are_the_drawing_s_svg_ids():
    import re

    from netdef.compiler.draw import to_dot

    net, problems = check_net(FCN8S)
    data = view_data(net, problems, None)
    ids = set(re.findall(r'\[id="([^"]+)"', to_dot(net, element_ids=True)))
    drawn_layers = {entry["node"] for entry in data["layers"].values()}
    assert ids == drawn_layers | set(data["blobs"])
    assert 'id="' not in to_dot(net)  # the golden-compared default is unchanged
