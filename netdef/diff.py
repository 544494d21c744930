"""`netdef diff`: what changed between two nets, layer by layer.

Both nets are compared after parsing and upgrade, in one phase, so a V1 file and
its `netdef upgrade` output are identical. Layers are matched by name first; the
ones left are matched by type, in the order they run (a renamed layer). For each
matched pair the parameters are compared field by field, then every blob's shape
and receptive field; with weights, every learned blob's largest difference.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .compiler.analysis import partial_net
from .compiler.draw import visible
from .compiler.ir import Layer, Net
from .compiler.receptive import rf_json
from .compiler.weights import read_weights

NOT_COMPARED = {"name", "top", "bottom", "blobs", "include", "exclude", "phase"}  # shown apart


@dataclass
class NetDiff:
    a: str
    b: str
    formats: tuple[str, str]
    added: list[dict] = field(default_factory=list)  # {name, type}
    removed: list[dict] = field(default_factory=list)
    renamed: list[dict] = field(default_factory=list)  # {a, b, type}
    changed: list[dict] = field(default_factory=list)  # {layer, fields: [{field, a, b}]}
    blobs: list[dict] = field(default_factory=list)  # {blob, shape: [a, b], rf: [a, b]}
    weights: list[dict] = field(default_factory=list)  # {layer, blob, shape, max_abs, max_rel}

    @property
    def identical(self) -> bool:
        return not any((self.added, self.removed, self.renamed, self.changed, self.blobs,
                        self.weights))

    def to_json(self) -> dict:
        return {"a": self.a, "b": self.b, "formats": list(self.formats),
                "identical": self.identical, "added": self.added, "removed": self.removed,
                "renamed": self.renamed, "changed": self.changed, "blobs": self.blobs,
                "weights": self.weights}

    def to_text(self) -> str:
        """A unified-diff-like listing: '-' only in A, '+' only in B, '@' a changed pair."""
        lines = [f"--- {self.a} ({self.formats[0]})", f"+++ {self.b} ({self.formats[1]})"]
        lines += [f"- layer {entry['name']} ({entry['type']})" for entry in self.removed]
        lines += [f"+ layer {entry['name']} ({entry['type']})" for entry in self.added]
        lines += [f"@ layer {entry['a']} -> {entry['b']} ({entry['type']}): renamed"
                  for entry in self.renamed]
        for entry in self.changed:
            lines.append(f"@ layer {entry['layer']}")
            for change in entry["fields"]:
                lines += [f"-   {change['field']}: {_text(change['a'])}",
                          f"+   {change['field']}: {_text(change['b'])}"]
        for entry in self.blobs:
            lines += [f"@ blob {entry['blob']}", f"-   {_blob_text(entry, 0)}",
                      f"+   {_blob_text(entry, 1)}"]
        for entry in self.weights:
            lines.append(f"@ weights {entry['layer']} blob {entry['blob']}: max abs "
                         f"{entry['max_abs']:.4g}, max rel {entry['max_rel']:.4g}")
        if self.identical:
            lines.append("identical" + (" apart from the format" if len(set(self.formats)) > 1
                                        else ""))
        return "\n".join(map(visible, lines)) + "\n"  # a name's control characters as \xNN


def diff_nets(a, b, *, phase: str = "TEST", inputs: dict | None = None,
              weights_a=None, weights_b=None) -> NetDiff:
    net_a, net_b = (partial_net(source, phase=phase, inputs=inputs) for source in (a, b))
    result = NetDiff(net_a.path, net_b.path, (net_a.parsed.original_format,
                                               net_b.parsed.original_format))
    pairs = match_layers(net_a, net_b)
    matched_b = {id(layer_b) for _, layer_b in pairs}
    matched_a = {id(layer_a) for layer_a, _ in pairs}
    result.removed = [_named(layer) for layer in net_a.layers if id(layer) not in matched_a]
    result.added = [_named(layer) for layer in net_b.layers if id(layer) not in matched_b]
    for layer_a, layer_b in pairs:
        if layer_a.name != layer_b.name:
            result.renamed.append({"a": layer_a.name, "b": layer_b.name, "type": layer_b.type})
        changes = field_changes(layer_a, layer_b)
        if changes:
            result.changed.append({"layer": layer_b.name, "fields": changes})
    result.blobs = blob_changes(net_a, net_b)
    if weights_a is not None and weights_b is not None:
        result.weights = weight_changes(read_weights(weights_a), read_weights(weights_b))
    return result


def match_layers(net_a: Net, net_b: Net) -> list[tuple[Layer, Layer]]:
    """Pairs of layers: the same name (repeated names in order), then the same type in the
    order the leftover layers run."""
    by_name: dict[str, list[Layer]] = {}
    for layer in net_b.layers:
        by_name.setdefault(layer.name, []).append(layer)
    pairs, left_a = [], []
    for layer in net_a.layers:
        candidates = by_name.get(layer.name)
        if candidates:
            pairs.append((layer, candidates.pop(0)))
        else:
            left_a.append(layer)
    left_b: dict[str, list[Layer]] = {}
    for layer in (layer for layers in by_name.values() for layer in layers):
        left_b.setdefault(layer.type, []).append(layer)
    for layers in left_b.values():
        layers.sort(key=lambda layer: layer.index)
    for layer in left_a:
        candidates = left_b.get(layer.type)
        if candidates:
            pairs.append((layer, candidates.pop(0)))
    return pairs


def field_changes(layer_a: Layer, layer_b: Layer) -> list[dict]:
    values_a, values_b = dict(_fields(layer_a.param)), dict(_fields(layer_b.param))
    return [{"field": key, "a": values_a.get(key), "b": values_b.get(key)}
            for key in sorted(values_a.keys() | values_b.keys())
            if values_a.get(key) != values_b.get(key)]


def _fields(message, prefix: str = ""):
    """(dotted path, value) of every set field; repeated messages indexed, `[k]`."""
    for descriptor, value in message.ListFields():
        if not prefix and descriptor.name in NOT_COMPARED:
            continue
        name = prefix + descriptor.name
        if descriptor.message_type is None:
            yield name, list(value) if descriptor.is_repeated else value
        elif descriptor.is_repeated:
            for position, item in enumerate(value):
                yield from _fields(item, f"{name}[{position}].")
        else:
            yield from _fields(value, name + ".")


def blob_changes(net_a: Net, net_b: Net) -> list[dict]:
    """Blobs in both nets whose final shape or receptive field differs."""
    latest_a, latest_b = (_latest_blobs(net) for net in (net_a, net_b))
    changes = []
    for name, blob_a in latest_a.items():
        blob_b = latest_b.get(name)
        if blob_b is None:
            continue
        shapes = [_shape(blob.shape) for blob in (blob_a, blob_b)]
        fields = [rf_json(blob.coords) for blob in (blob_a, blob_b)]
        if shapes[0] != shapes[1] or fields[0] != fields[1]:
            changes.append({"blob": name, "shape": shapes, "rf": fields})
    return changes


def weight_changes(layers_a, layers_b) -> list[dict]:
    """Per learned blob in both files: the largest absolute and relative difference (the
    relative one against the largest magnitude in A's blob); a shape change as inf."""
    blobs_b = {}
    for layer in layers_b:
        for position, array in enumerate(layer.blobs):
            blobs_b.setdefault((layer.name, position), array)
    changes = []
    for layer in layers_a:
        for position, array in enumerate(layer.blobs):
            other = blobs_b.get((layer.name, position))
            if other is None:
                continue
            if array.shape != other.shape:
                largest = relative = float("inf")
            else:
                gap = np.abs(np.asarray(array, np.float64) - np.asarray(other, np.float64))
                largest = float(gap.max()) if gap.size else 0.0
                scale = float(np.abs(array).max()) if array.size else 0.0
                relative = largest / scale if scale else (0.0 if largest == 0 else float("inf"))
            if largest:
                changes.append({"layer": layer.name, "blob": position,
                                "shape": [list(array.shape), list(other.shape)],
                                "max_abs": largest, "max_rel": relative})
    return changes


def _latest_blobs(net: Net) -> dict:
    return {blob.name: blob for blob in net.blobs.values()}  # the version after in-place layers


def _named(layer: Layer) -> dict:
    return {"name": layer.name, "type": layer.type}


def _shape(shape) -> list | None:
    return list(shape) if shape is not None else None


def _text(value) -> str:
    if isinstance(value, float):  # prototxt floats are float32: 0.01, not 0.009999999776
        return f"{value:.7g}"
    return "(unset)" if value is None else str(value)


def _blob_text(entry: dict, side: int) -> str:
    shape = entry["shape"][side]
    parts = ["x".join(map(str, shape)) if shape is not None else "?"]
    for name, rf in entry["rf"][side].items():
        parts.append(f"rf[{name}] size {rf['size']} stride {rf['stride']} offset {rf['offset']}")
    return ", ".join(parts)
