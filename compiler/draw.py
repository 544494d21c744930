"""The DAG as a graphviz picture: layer nodes (type, key parameters, colour by
family) and blob nodes (shape, receptive field and stride).

In-place layers (ReLU, BatchNorm, Scale, Dropout on their bottom) are folded
into the node of the layer that produced the blob, as extra rows, when nothing
else reads the blob between them; so a ResNet block draws as a few nodes, not
twelve. Elsewhere they are drawn as ordinary layers between blob versions.
"""
from __future__ import annotations

import html
import subprocess
import unicodedata

from netdef.errors import UsageError

from .ir import Layer, Net
from .receptive import rf_json

FAMILY_COLOURS = {
    "conv": "#a6cee3", "pool": "#b2df8a", "pointwise": "#eeeeee", "norm": "#fdbf6f",
    "merge": "#cab2d6", "reshape": "#ffff99", "data": "#8dd3c7", "loss": "#fb9a99",
    "sink": "#d9d9d9", "crf": "#f4a6d7", "other": "#ffffff",
}
UNKNOWN_COLOUR = "#ff6666"  # a layer type netdef does not know: analysed around, not through
FORMATS = ("svg", "png", "pdf", "dot")


def to_dot(net: Net, rankdir: str = "TB", element_ids: bool = False) -> str:
    """DOT source for the net; deterministic, so it can be compared to a golden file.
    `element_ids`: SVG ids on the nodes (`L<layer index>`, `b<blob node number>`), for
    pages that script the drawing (`netdef view`)."""
    lines = [f'digraph "{_quote(net.parsed.net.name or "net")}" {{',
             f"  rankdir={rankdir}; newrank=true; nodesep=0.2; ranksep=0.3;",
             '  node [fontname="Helvetica", fontsize=10]; edge [arrowsize=0.6];']
    hosts, shown = node_map(net)
    rows = {}
    for index, host in hosts.items():
        rows.setdefault(host, []).append(net.layers[index])
    for layer in net.layers:
        if layer.index not in hosts:
            element_id = f'id="{_layer_id(layer)}", ' if element_ids else ""
            lines.append(f"  {_layer_id(layer)} [{element_id}shape=plaintext, margin=0, "
                         f"label=<{layer_label(layer, rows.get(layer.index, []))}>];")
    latest = {shown[blob.id]: blob for blob in net.blobs.values()}  # after in-place layers
    for number, (node, blob) in enumerate(latest.items()):
        element_id = f'id="b{number}", ' if element_ids else ""
        lines.append(f"  {node} [{element_id}shape=box, style=rounded, color=gray50, fontsize=9, "
                     f'label="{blob_label(blob)}"];')
    for layer in net.layers:
        if layer.index in hosts:
            continue
        many = len(layer.bottoms) > 1
        for position, blob_id in enumerate(layer.bottoms):
            label = f' [taillabel="{position}", fontsize=8]' if many else ""
            lines.append(f"  {shown[blob_id]} -> {_layer_id(layer)}{label};")
        for blob_id in layer.tops:
            lines.append(f"  {_layer_id(layer)} -> {shown[blob_id]};")
    lines += legend(net)
    lines.append("}")
    return "\n".join(lines) + "\n"


def node_map(net: Net) -> tuple[dict[int, int], dict[str, str]]:
    """Which node shows what: folded layer index -> the index of the layer whose node holds
    it as a row, and blob id -> the DOT id of the blob node that stands for it."""
    folded = foldable_layers(net)
    hosts = {}
    for layer in net.layers:
        if layer.index in folded:
            hosts[layer.index] = hosts.get(folded[layer.index], folded[layer.index])
    shown = {}
    for blob in net.blobs.values():
        if blob.producer is not None and blob.producer in hosts:  # a folded layer's output
            shown[blob.id] = shown[net.layers[blob.producer].bottoms[0]]
        else:
            shown[blob.id] = _blob_id(blob.id)
    return hosts, shown


def legend(net: Net) -> list[str]:
    """A box naming the colour of each layer family the net uses (and of unknown types)."""
    families = sorted({layer.rule.family for layer in net.layers if layer.rule})
    unknown = any(layer.rule is None for layer in net.layers)
    entries = [(family, FAMILY_COLOURS.get(family, "#ffffff")) for family in families]
    entries += [("unknown type", UNKNOWN_COLOUR)] if unknown else []
    cells = "".join(f'<TD BGCOLOR="{colour}">{html.escape(name)}</TD>' for name, colour in entries)
    return [f'  legend [shape=plaintext, margin=0, label=<<TABLE BORDER="0" CELLBORDER="1" '
            f'CELLSPACING="0" CELLPADDING="2"><TR><TD BORDER="0"><FONT POINT-SIZE="9">'
            f'layer families</FONT></TD>{cells}</TR></TABLE>>];']


def foldable_layers(net: Net) -> dict[int, int]:
    """In-place layers that can join their bottom's producer: layer index -> producer index."""
    folded = {}
    for layer in net.layers:
        if len(layer.bottoms) != 1 or len(layer.tops) != 1:
            continue
        bottom, top = net.blobs[layer.bottoms[0]], net.blobs[layer.tops[0]]
        if bottom.name != top.name or bottom.producer is None:
            continue
        producer = net.layers[bottom.producer]
        is_input = producer.rule is not None and producer.rule.is_input
        if bottom.consumers == [layer.index] and not is_input:
            folded[layer.index] = producer.index
    return folded


def layer_label(layer: Layer, in_place: list[Layer]) -> str:
    """An HTML-like table: the layer's name, type and key parameters, then one row per folded layer."""
    def row(member: Layer, main: bool) -> str:
        rule = member.rule
        colour = FAMILY_COLOURS.get(rule.family, "#ffffff") if rule else UNKNOWN_COLOUR
        summary = rule.summary(member.param) if rule else "unknown type: not analysed"
        summary = ", ".join(filter(None, [summary, *(f"{key} {_values(value)} (solved)"
                                                     for key, value in member.solution.items())]))
        name = html.escape(visible(member.name))
        kind = html.escape(visible(member.type))
        if main:
            text = f"<B>{name}</B><BR/>{kind}"
            if summary:
                text += f'<BR/><FONT POINT-SIZE="9">{html.escape(summary)}</FONT>'
        else:
            text = f'<FONT POINT-SIZE="9">{name}: {kind}{" " + html.escape(summary) if summary else ""}</FONT>'
        return f'<TR><TD BGCOLOR="{colour}">{text}</TD></TR>'
    body = row(layer, True) + "".join(row(member, False) for member in in_place)
    return f'<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3">{body}</TABLE>'


def blob_label(blob) -> str:
    parts = [blob.name]
    if blob.shape is not None:
        parts.append("x".join(map(str, blob.shape)))
    rf = rf_json(blob.coords)
    for name, entry in rf.items():
        size, stride = (_values(entry[key]) for key in ("size", "stride"))
        parts.append(f"rf {size} / {stride}" if len(rf) == 1 else f"{name}: rf {size} / {stride}")
    return "\\n".join(_quote(part) for part in parts)


def render(dot_source: str, path: str, fmt: str, dpi: int | None = None) -> None:
    """Write DOT source, or run the real `dot` to make svg/png/pdf (`dpi`: png resolution,
    svg/pdf size; graphviz's default is 96)."""
    if fmt == "dot":
        with open(path, "w") as handle:
            handle.write(dot_source)
        return
    with open(path, "wb") as handle:
        handle.write(run_dot(dot_source, fmt, dpi))


def run_dot(dot_source: str, fmt: str, dpi: int | None = None) -> bytes:
    """The picture graphviz's `dot` makes of the source, in `fmt` (svg, png, pdf)."""
    scale = [f"-Gdpi={dpi}"] if dpi else []
    try:
        result = subprocess.run(["dot", f"-T{fmt}", *scale], input=dot_source.encode(),
                                capture_output=True, timeout=120)
    except FileNotFoundError:
        raise UsageError("graphviz's `dot` is not installed (Debian: apt-get install graphviz); "
                         "write a .dot file instead") from None
    except subprocess.TimeoutExpired:
        raise UsageError("dot took over 120 s; write a .dot file and render it yourself") from None
    if result.returncode:
        raise UsageError(f"dot failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def _values(values) -> str:
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def _quote(text: str) -> str:
    return visible(text).replace("\\", "\\\\").replace('"', '\\"')


def visible(text: str) -> str:
    """Control characters as \\xNN text: SVG (XML) cannot hold most of them, and dot refuses
    them in HTML labels."""
    return "".join(f"\\x{ord(c):02x}" if unicodedata.category(c) == "Cc" else c for c in text)


def _layer_id(layer: Layer) -> str:
    return f"L{layer.index}"


def _blob_id(blob_id: str) -> str:
    return '"B:' + _quote(blob_id) + '"'
