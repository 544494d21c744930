"""Caffe's `Scale` layer (multiplies by a learned or given (bottom 1) factor over axes from axis;
optional bias).

Runs as `netdef.runtime.normalization.Scale`. Tested by `tests/test_rules.py`
(test_rule[Scale]), and in `tests/compiler/test_fillers.py`, `tests/compiler/test_receptive.py`,
`tests/test_opencv_shapes.py`.
"""
from __future__ import annotations

from ._base import register
from ._broadcast import BroadcastRule
from ..modules import runtime


@register
class Scale(BroadcastRule):
    description = "multiplies by a learned or given (bottom 1) factor over axes from axis; optional bias"
    params = ("scale_param",)

    def param(self, layer):
        return layer.scale_param

    def learned_shapes(self, layer, bottoms):
        shape = self.operand(layer, bottoms)[1]
        return [shape] * ((len(bottoms) == 1) + layer.scale_param.bias_term)

    def lower(self, layer, ctx):
        axis, shape = self.operand(layer, ctx.bottom_shapes)
        learned, bias = len(ctx.bottom_shapes) == 1, layer.scale_param.bias_term
        blobs = ("weight",) * learned + ("bias",) * bias
        return runtime("Scale", blobs, axis=axis, shape=shape, ndim=len(ctx.bottom_shapes[0]),
                       learned=learned, bias=bias)

    def fillers(self, layer):
        param = layer.scale_param
        weight = ((param.filler if param.HasField("filler") else None, 1.0),) \
            if len(layer.bottom) == 1 else ()
        return weight + ((param.bias_filler, 0.0),) * param.bias_term
