"""Caffe's `Concat` layer (joins bottoms along axis (default 1); all other axes must agree).

Runs as `netdef.runtime.shape.Concat`. Tested by `tests/test_rules.py` (test_rule[Concat]), and
in `tests/compiler/layers/test_shape_rules.py`, `tests/test_crop_offsets.py`.
"""
from __future__ import annotations

from ._base import LayerRule, ShapeIssue, canonical_axis, fmt, register
from ..modules import runtime

_P = ("concat_param",)


@register
class Concat(LayerRule):
    description = "joins bottoms along axis (default 1); all other axes must agree"
    family = "merge"
    bottoms = (1, None)
    params = ("concat_param",)

    def top_shapes(self, layer, bottoms):
        param = layer.concat_param
        first = bottoms[0]
        raw_axis = param.axis if param.HasField("axis") or not param.HasField("concat_dim") \
            else param.concat_dim
        axis = canonical_axis(raw_axis, len(first), _P + ("axis",))
        total = 0
        for index, shape in enumerate(bottoms):
            if len(shape) != len(first) or shape[:axis] + shape[axis + 1:] != \
                    first[:axis] + first[axis + 1:]:
                raise ShapeIssue(f"bottom {index} has shape {fmt(shape)}, which does not match "
                                 f"bottom 0 ({fmt(first)}) outside the concat axis {axis}",
                                 ("bottom", index))
            total += shape[axis]
        return [first[:axis] + (total,) + first[axis + 1:]]

    def spatial_map(self, layer, ctx):
        param = layer.concat_param
        axis = param.axis if param.HasField("axis") or not param.HasField("concat_dim") \
            else param.concat_dim
        return [ctx.merged() if ctx.keeps_positions(axis) else ctx.ended()]

    def summary(self, layer):
        param = layer.concat_param
        axis = param.axis if param.HasField("axis") or not param.HasField("concat_dim") \
            else param.concat_dim
        return "" if axis == 1 else f"axis {axis}"

    def lower(self, layer, ctx):
        param = layer.concat_param
        axis = param.axis if param.HasField("axis") or not param.HasField("concat_dim") \
            else param.concat_dim
        return runtime("Concat", axis=axis % len(ctx.bottom_shapes[0]))
