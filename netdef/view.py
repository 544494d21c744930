"""What `netdef view`'s page shows, as plain JSON-ready data: every layer with its source
lines, parameters, costs and problems, every drawn blob with its shape and the exact
coordinate map per image input (stride, offset and the per-phase support, so a page can
draw any unit's receptive field, phases of upsampled blobs included), and a summary.

Keys match the SVG ids of `to_dot(net, element_ids=True)`: layers `L<index>`, blob nodes
`b<number>`. Blob nodes stand for a blob and its in-place versions, as in `draw`.
"""
from __future__ import annotations

import math

from google.protobuf import text_format

from .compiler.analysis import build_report, layer_cost
from .compiler.draw import FAMILY_COLOURS, UNKNOWN_COLOUR, node_map
from .compiler.ir import Net
from .compiler.receptive import rf_json
from .compiler.spatial import EVERYWHERE

MAX_PARAM_TEXT = 20_000  # characters of a layer's parameters shown (a huge inline blob is cut)


def view_data(net: Net, problems: list, text: str | None, weights: dict | None = None) -> dict:
    """`weights`: layer index -> its blobs' statistics (weight_stats), shown with the layer."""
    hosts, shown = node_map(net)
    numbers = {node: f"b{k}" for k, node in enumerate(dict.fromkeys(shown.values()))}
    blob_node = {blob_id: numbers[node] for blob_id, node in shown.items()}
    lines = text.splitlines() if text is not None else None
    spans = net.parsed.source_map.layer_spans()
    layers = {}
    for layer in net.layers:
        params, flops = layer_cost(net, layer) or (None, None)
        rule = layer.rule
        layers[f"L{layer.index}"] = {
            "name": layer.name, "type": layer.type,
            "family": rule.family if rule else None,
            "colour": FAMILY_COLOURS.get(rule.family, "#ffffff") if rule else UNKNOWN_COLOUR,
            "node": f"L{hosts.get(layer.index, layer.index)}",
            "parameters": _parameter_text(layer.param),
            "lines": _span(spans.get(layer.source_index), lines),
            "bottoms": [blob_node[b] for b in layer.bottoms],
            "tops": [blob_node[t] for t in layer.tops],
            "params": params, "flops": flops, "problems": [],
            "weights": (weights or {}).get(layer.index)}
    blobs = {}
    for blob in net.blobs.values():  # later versions overwrite: the blob after in-place layers
        entry = blobs.setdefault(blob_node[blob.id], {"name": blob.name, "producers": [],
                                                      "consumers": []})
        entry["shape"] = list(blob.shape) if blob.shape is not None else None
        entry["rf"] = rf_json(blob.coords)
        entry["maps"] = _maps(blob.coords)
        if blob.producer is not None:
            entry["producers"].append(f"L{blob.producer}")
        entry["consumers"] += [f"L{index}" for index in blob.consumers]
    by_name = {}
    for key, layer in layers.items():
        by_name.setdefault(layer["name"], key)
    listed = _problems(problems, by_name)
    for number, problem in enumerate(listed):
        if problem["layer"] is not None:
            layers[problem["layer"]]["problems"].append(number)
    return {"name": net.parsed.net.name, "path": net.path, "format": net.parsed.original_format,
            "source": lines, "layers": layers, "blobs": blobs, "problems": listed,
            "summary": _summary(net, blobs, blob_node)}


def failed_view_data(problems: list, text: str | None, path: str) -> dict:
    """The page of a file that does not parse: its problems and its text, nothing drawn."""
    return {"name": None, "path": path, "format": None,
            "source": text.splitlines() if text is not None else None, "layers": {},
            "blobs": {}, "problems": _problems(problems, {}), "summary": None}


def weight_stats(net: Net, weights) -> dict[int, list[dict]]:
    """Layer index -> per learned blob: shape, mean, std, min, max, and whether the weights
    file gave it or it kept the prototxt's filler, as `netdef.load` binds them."""
    from .compiler.bind import build_module

    module = build_module(net, weights)
    stats = {}
    for index, target, names in module.caffe_parameters:
        owner = module.get_submodule(target)
        stats[index] = [_stats(position, getattr(owner, name).detach().double(),
                               f"{target}.{name}" in module.caffe_loaded_tensors)
                        for position, name in enumerate(names)]
    return stats


def _stats(position: int, values, loaded: bool) -> dict:
    summary = (values.mean(), values.std(correction=0), values.min(), values.max()) \
        if values.numel() else (0.0,) * 4
    return {"blob": position, "shape": list(values.shape),
            **{key: _number(value) for key, value in zip(("mean", "std", "min", "max"), summary)},
            "source": "weights file" if loaded else "filler"}


def _number(value) -> float | str:
    """A float, or its text where JSON has no number for it (nan, inf)."""
    value = float(value)
    return value if math.isfinite(value) else str(value)


def _problems(problems: list, by_name: dict) -> list[dict]:
    return [{"text": problem.format(), "line": problem.line,
             "layer": by_name.get(problem.layer) if problem.layer is not None else None,
             "warning": problem.warning} for problem in problems]


def _parameter_text(param) -> str:
    shown = type(param)()
    shown.CopyFrom(param)
    for shown_elsewhere in ("name", "type", "bottom", "top", "blobs"):  # blobs: numbers, not settings
        if shown_elsewhere in type(param).DESCRIPTOR.fields_by_name:
            shown.ClearField(shown_elsewhere)
    text = text_format.MessageToString(shown)
    return text if len(text) <= MAX_PARAM_TEXT else text[:MAX_PARAM_TEXT] + "\n..."


def _span(span, lines) -> list[int] | None:
    """First and last line of a layer, the closing braces after its last field included."""
    if span is None:
        return None
    first, last = span
    while lines is not None and last < len(lines) and set(lines[last].strip()) == {"}"}:
        last += 1
    return [first, last]


def _maps(field) -> dict:
    """Input name -> one {stride, offset, support} per spatial axis; support per phase is
    [lo, hi] around the unit's centre in input pixels, or None (the phase reads no input)."""
    if field is EVERYWHERE or not field:
        return {}
    return {name: [{"stride": float(axis.stride), "offset": float(axis.offset),
                    "support": [None if s is None else [float(s[0]), float(s[1])]
                                for s in axis.support]} for axis in axes]
            for name, axes in field.items() if axes}


def _summary(net: Net, blobs: dict, blob_node: dict) -> dict:
    totals = build_report(net, []).totals()
    inputs = {net.blobs[b].name: blobs[blob_node[b]]["shape"] for b in net.input_blobs}
    outputs = [entry["name"] for entry in blobs.values() if not entry["consumers"]]
    deepest = max(((max(rf["size"]), order, entry["name"])  # ties: the one run last
                   for order, entry in enumerate(blobs.values())
                   for rf in entry["rf"].values()), default=None)
    return {"inputs": inputs, "outputs": outputs, "params": totals["params"],
            "flops": totals["flops"],
            "deepest": {"blob": deepest[2], "size": deepest[0]} if deepest else None}
