"""Caffe's `Flatten` layer (merges axes axis..end_axis (default 1..-1) into one).

Runs as `netdef.runtime.shape.Flatten`. Tested by `tests/test_rules.py` (test_rule[Flatten]),
and in `tests/compiler/layers/test_shape_rules.py`, `tests/compiler/test_receptive.py`.
"""
from __future__ import annotations

from ._base import LayerRule, ShapeIssue, canonical_axis, count, register
from ..modules import runtime

_P = ("flatten_param",)


@register
class Flatten(LayerRule):
    description = "merges axes axis..end_axis (default 1..-1) into one"
    family = "reshape"
    params = ("flatten_param",)

    def top_shapes(self, layer, bottoms):
        shape = bottoms[0]
        start = canonical_axis(layer.flatten_param.axis, len(shape), _P + ("axis",))
        end = canonical_axis(layer.flatten_param.end_axis, len(shape), _P + ("end_axis",))
        if end < start:
            raise ShapeIssue(f"end_axis {end} comes before axis {start}", _P + ("end_axis",))
        return [shape[:start] + (count(shape, start, end + 1),) + shape[end + 1:]]

    def lower(self, layer, ctx):
        ndim = len(ctx.bottom_shapes[0])
        param = layer.flatten_param
        return runtime("Flatten", start=param.axis % ndim, end=param.end_axis % ndim)
