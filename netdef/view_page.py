"""`netdef view`: one self-contained HTML page of a net. The DAG is graphviz's drawing (as
`draw` makes it) with SVG ids on its nodes; the page's script reads everything else from a
JSON block (netdef/view.py), and the image, styles and script are inline, so the file opens
from disk with no network. A Content-Security-Policy forbids the page any request at all.

Text from the model file reaches the page only inside that JSON block (with `<`, `>` and `&`
escaped, so it cannot close the block) and inside graphviz's SVG (XML-escaped by dot, parsed
by the page as XML), and the script sets it as text, never as markup.
"""
from __future__ import annotations

import base64
import html
import io
import json
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from importlib import resources

from .compiler.analysis import check_net
from .compiler.draw import run_dot, to_dot, visible
from .compiler.parse import read_source
from .errors import DataError, NetdefError, Problem, UsageError
from .view import failed_view_data, view_data, weight_stats

SVG_NAMESPACES = {"": "http://www.w3.org/2000/svg", "xlink": "http://www.w3.org/1999/xlink"}
PAGE_TOKEN = re.compile(r"@(TITLE|STYLE|SCRIPT|DATA)@")
KEPT_IMAGE_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png"}  # others are re-encoded as PNG


@dataclass
class Picture:
    """The --image, ready to inline: its pixel size and a data: URL."""
    width: int
    height: int
    href: str


@dataclass
class Written:
    layers: int
    problems: list[Problem]
    notes: list[str]


def write_view(source: str, output: str, *, phase: str = "TEST", inputs: dict | None = None,
               image: str | None = None, weights: str | None = None,
               solve_crops: bool = True) -> Written:
    """Analyse the net as `check` does and write its page; a net with errors still gets one."""
    inputs = dict(inputs or {})
    picture = read_picture(image) if image else None
    image_input = _image_input(source, phase, inputs, solve_crops) if picture else None
    if image_input and image_input[0] not in inputs:  # the image sizes the net, as in `run`
        name, declared = image_input
        batch, channels = (declared[0], declared[1]) if declared else (1, 3)
        inputs[name] = (batch, channels, picture.height, picture.width)
    text = _source_text(source)
    notes = []
    try:
        net, problems = check_net(source, phase=phase, inputs=inputs, solve_crops=solve_crops)
    except NetdefError as exc:  # it does not parse: the page lists why
        problems = exc.problems or [Problem(type(exc), str(exc), source)]
        data = failed_view_data(problems, text, source)
    else:
        stats = None
        if weights and any(not p.warning for p in problems):
            notes.append("the weights are not shown: the net has errors")
        elif weights:
            stats = weight_stats(net, weights)
        data = view_data(net, problems, text, stats)
        data["svg"], data["drawing_problem"] = _drawing(net)
    if picture and image_input:
        data["image"] = {"input": image_input[0], "width": picture.width,
                         "height": picture.height, "href": picture.href}
    with open(output, "w", encoding="utf-8") as handle:
        handle.write(page(data))
    return Written(len(data["layers"]), problems, notes)


def page(data: dict) -> str:
    """The HTML: the template with the styles, the script and the data put in."""
    assets = resources.files("netdef") / "page"
    parts = {"TITLE": html.escape(visible(data.get("name") or "net")),
             "STYLE": (assets / "view.css").read_text(encoding="utf-8"),
             "SCRIPT": (assets / "view.js").read_text(encoding="utf-8"),
             "DATA": script_json(data)}
    template = (assets / "view.html").read_text(encoding="utf-8")
    return PAGE_TOKEN.sub(lambda match: parts[match.group(1)], template)  # one pass: no re-scan


def script_json(data) -> str:
    """JSON that can sit inside <script>: no character in it can end the element."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def svg_text(dot_source: str) -> str:
    """graphviz's SVG, re-serialised: no XML declaration, DOCTYPE or comments (dot writes
    the graph's name into one), the tooltips' <title>s of nodes and edges dropped."""
    for prefix, uri in SVG_NAMESPACES.items():
        ElementTree.register_namespace(prefix, uri)
    root = ElementTree.fromstring(run_dot(dot_source, "svg"))
    svg = "{" + SVG_NAMESPACES[""] + "}"
    for group in root.iter(svg + "g"):
        for title in group.findall(svg + "title"):
            group.remove(title)
    return ElementTree.tostring(root, encoding="unicode")


def read_picture(path: str) -> Picture:
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        with Image.open(io.BytesIO(raw)) as opened:
            mime = KEPT_IMAGE_FORMATS.get(opened.format)
            width, height = opened.size
            if mime is None:  # a format browsers may not show: PNG of the same pixels
                buffer = io.BytesIO()
                opened.convert("RGB").save(buffer, "PNG")
                raw, mime = buffer.getvalue(), "image/png"
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"--image: cannot read {path}: {exc}") from None
    return Picture(width, height, f"data:{mime};base64," + base64.b64encode(raw).decode("ascii"))


def _image_input(source, phase, inputs, solve_crops) -> tuple[str, tuple | None] | None:
    """The input the image stands for: the first one that is N x C x H x W or unsized."""
    try:
        net, _ = check_net(source, phase=phase, inputs=inputs, solve_crops=solve_crops)
    except NetdefError:
        return None
    for blob_id in net.input_blobs:
        blob = net.blobs[blob_id]
        if blob.shape is None or len(blob.shape) == 4:
            return blob.name, blob.shape
    raise UsageError("--image: the net has no N x C x H x W input to show it for")


def _drawing(net) -> tuple[str | None, str | None]:
    """The SVG, or why there is none (the page still works without it)."""
    try:
        return svg_text(to_dot(net, element_ids=True)), None
    except UsageError as exc:
        return None, f"No drawing: {exc}."
    except ElementTree.ParseError as exc:
        return None, f"No drawing: dot's SVG did not parse ({exc})."


def _source_text(source) -> str | None:
    """The file's text for its source lines; None for a binary prototxt or one not read."""
    try:
        content, _ = read_source(source)
        content = content.encode("utf-8") if isinstance(content, str) else content
        return None if b"\0" in content else content.decode("utf-8")
    except (NetdefError, UnicodeDecodeError):
        return None
