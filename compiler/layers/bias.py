"""Caffe's `Bias` layer (adds a learned or given (bottom 1) term over axes from axis).

Runs as `netdef.runtime.normalization.Bias`. Tested by `tests/test_rules.py` (test_rule[Bias]).
"""
from __future__ import annotations

from ._base import register
from ._broadcast import BroadcastRule
from ..modules import runtime


@register
class Bias(BroadcastRule):
    description = "adds a learned or given (bottom 1) term over axes from axis"
    params = ("bias_param",)

    def param(self, layer):
        return layer.bias_param

    def learned_shapes(self, layer, bottoms):
        return [self.operand(layer, bottoms)[1]] if len(bottoms) == 1 else []

    def lower(self, layer, ctx):
        axis, shape = self.operand(layer, ctx.bottom_shapes)
        learned = len(ctx.bottom_shapes) == 1
        return runtime("Bias", ("bias",) * learned, axis=axis, shape=shape,
                       ndim=len(ctx.bottom_shapes[0]), learned=learned)

    def fillers(self, layer):
        return ((layer.bias_param.filler, 0.0),) if len(layer.bottom) == 1 else ()
