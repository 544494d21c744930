"""Coordinate maps and receptive fields of every blob, and the crop solver.

Runs after shape inference, in layer order: each image input starts as the
identity map, and each rule's `spatial_map` carries its bottoms' fields to its
tops (see layers/_spatial.py). Rules report misaligned merges and crop offsets
through the context; solved values land in `layer.solution`.
"""
from __future__ import annotations

from netdef.errors import Problem

from .ir import Layer, Net
from .layers import ShapeIssue
from .spatial import EVERYWHERE, AxisMap, SpatialBottom, SpatialContext


def infer_fields(net: Net, solve_crops: bool = True) -> list[Problem]:
    problems: list[Problem] = []
    for layer in net.layers:
        fields = input_fields(net, layer) if layer.rule and layer.rule.is_input \
            else layer_fields(net, layer, problems, solve_crops)
        for blob_id, field in zip(layer.tops, fields):
            net.blobs[blob_id].coords = field
    return problems


def input_fields(net: Net, layer: Layer) -> list:
    """Image-like tops (N x C x spatial...) start at the identity; others carry no positions."""
    fields = []
    for position, blob_id in enumerate(layer.tops):
        shape = net.blobs[blob_id].shape
        spatial = len(shape) - 2 if shape is not None else (2 if position == 0 else 0)
        name = net.blobs[blob_id].name
        fields.append({name: (AxisMap.identity(),) * spatial} if spatial > 0 else {})
    return fields


def layer_fields(net: Net, layer: Layer, problems: list[Problem], solve_crops: bool) -> list:
    bottoms = [SpatialBottom(net.blobs[b].name, net.blobs[b].shape, net.blobs[b].coords)
               for b in layer.bottoms]
    if layer.rule is None or len(bottoms) != len(layer.param.bottom):
        return [EVERYWHERE] * len(layer.tops)
    ctx = SpatialContext(bottoms, [net.blobs[t].shape for t in layer.tops], solve_crops)
    try:
        fields = layer.rule.spatial_map(layer.param, ctx)
    except (ShapeIssue, ArithmeticError, ValueError, IndexError):
        return [EVERYWHERE] * len(layer.tops)  # bad parameters: the checks report them
    for issue in ctx.issues:
        problems.append(net.problem(issue.kind, issue.message, layer, issue.field,
                                    warning=issue.warning))
    layer.solution = ctx.solution
    return list(fields) + [EVERYWHERE] * (len(layer.tops) - len(fields))


def rf_json(field) -> dict:
    """The contract's per-input object: size, stride, offset, each [h, w] (one per spatial axis)."""
    if field is EVERYWHERE or not field:
        return {}
    result = {}
    for name, maps in field.items():
        if not maps:
            continue
        sizes, strides, offsets = zip(*(m.to_json() for m in maps))
        result[name] = {"size": list(sizes), "stride": list(strides), "offset": list(offsets)}
    return result
