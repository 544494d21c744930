"""Caffe's `Slice` layer (cuts bottom along axis (default 1) at slice_point(s), or into equal
parts).

Runs as `netdef.runtime.shape.Slice`. Tested by `tests/test_rules.py` (test_rule[Slice]), and in
`tests/compiler/layers/test_shape_rules.py`, `tests/test_fuzz_cases.py`.
"""
from __future__ import annotations

from ._base import Issue, LayerRule, ShapeIssue, canonical_axis, register
from ..modules import runtime

_P = ("slice_param",)


@register
class Slice(LayerRule):
    description = "cuts bottom along axis (default 1) at slice_point(s), or into equal parts"
    family = "reshape"
    tops = (1, None)
    params = ("slice_param",)

    def check_params(self, layer):
        points = list(layer.slice_param.slice_point)
        if points and len(points) != len(layer.top) - 1:
            yield Issue(f"{len(points)} slice points make {len(points) + 1} parts, but the layer has "
                        f"{len(layer.top)} tops", _P + ("slice_point", 0))
        for i in range(1, len(points)):
            if points[i] <= points[i - 1]:
                yield Issue("slice points must increase", _P + ("slice_point", i))

    def top_shapes(self, layer, bottoms):
        param = layer.slice_param
        shape = bottoms[0]
        raw_axis = param.axis if param.HasField("axis") or not param.HasField("slice_dim") \
            else param.slice_dim
        axis = canonical_axis(raw_axis, len(shape), _P + ("axis",))
        size, parts = shape[axis], len(layer.top)
        points = list(param.slice_point)
        if not points:
            if size % parts:
                raise ShapeIssue(f"axis {axis} has size {size}, not divisible into {parts} equal parts")
            points = [size // parts * i for i in range(1, parts)]
        if points and points[-1] >= size:
            raise ShapeIssue(f"slice point {points[-1]} is beyond axis {axis} (size {size})",
                             _P + ("slice_point", len(points) - 1))
        bounds = [0] + points + [size]
        return [shape[:axis] + (b - a,) + shape[axis + 1:] for a, b in zip(bounds, bounds[1:])]

    def spatial_map(self, layer, ctx):
        param = layer.slice_param
        axis = param.axis if param.HasField("axis") or not param.HasField("slice_dim") \
            else param.slice_dim
        if ctx.keeps_positions(axis):
            return ctx.passthrough(len(layer.top))
        return [ctx.ended()] * len(layer.top)

    def lower(self, layer, ctx):
        param = layer.slice_param
        axis = param.axis if param.HasField("axis") or not param.HasField("slice_dim") \
            else param.slice_dim
        shape = ctx.bottom_shapes[0]
        axis %= len(shape)
        return runtime("Slice", axis=axis, sizes=tuple(top[axis] for top in ctx.top_shapes))
