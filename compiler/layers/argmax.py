"""Caffe's `ArgMax` layer (indices (and optionally values) of the top_k largest entries along
axis).

Runs as `netdef.runtime.shape.ArgMax`. Tested by `tests/test_rules.py` (test_rule[ArgMax]), and
in `tests/test_more_layers.py`.
"""
from __future__ import annotations

from ._base import Issue, LayerRule, ShapeIssue, canonical_axis, count, register
from ..modules import runtime

_P = ("argmax_param",)


@register
class ArgMax(LayerRule):
    description = "indices (and optionally values) of the top_k largest entries along axis"
    family = "reshape"
    params = ("argmax_param",)

    def check_params(self, layer):
        if layer.argmax_param.top_k == 0:
            yield Issue("top_k must be positive, got 0", _P + ("top_k",))

    def top_shapes(self, layer, bottoms):
        param, shape = layer.argmax_param, bottoms[0]
        if param.HasField("axis"):
            axis = canonical_axis(param.axis, len(shape), _P + ("axis",))
            if param.top_k > shape[axis]:
                raise ShapeIssue(f"top_k {param.top_k} exceeds axis {axis} size {shape[axis]}",
                                 _P + ("top_k",))
            return [shape[:axis] + (param.top_k,) + shape[axis + 1:]]
        if param.top_k > count(shape, 1):
            raise ShapeIssue(f"top_k {param.top_k} exceeds the {count(shape, 1)} entries per item",
                             _P + ("top_k",))
        return [(shape[0], 2 if param.out_max_val else 1, param.top_k)]

    def spatial_map(self, layer, ctx):
        param = layer.argmax_param
        if param.HasField("axis") and ctx.keeps_positions(param.axis):
            return ctx.passthrough(1)
        return [ctx.ended()]  # without an axis ArgMax reduces over everything but the batch

    def lower(self, layer, ctx):
        param = layer.argmax_param
        axis = param.axis % len(ctx.bottom_shapes[0]) if param.HasField("axis") else None
        return runtime("ArgMax", axis=axis, top_k=param.top_k, out_max_val=param.out_max_val)
