"""Caffe's `Parameter` layer (exposes a learned blob of the given shape as its top).

Runs as `netdef.runtime.linear.Parameter`. Tested by `tests/test_rules.py`
(test_rule[Parameter]), and in `tests/test_more_layers.py`.
"""
from __future__ import annotations

from ._base import LayerRule, register
from ..modules import runtime


@register
class Parameter(LayerRule):
    description = "exposes a learned blob of the given shape as its top"
    family = "data"
    bottoms = (0, 0)
    params = ("parameter_param",)

    def input_shapes(self, layer):
        return [tuple(layer.parameter_param.shape.dim)]

    def top_shapes(self, layer, bottoms):
        return self.input_shapes(layer)

    def learned_shapes(self, layer, bottoms):
        return [tuple(layer.parameter_param.shape.dim)]

    def lower(self, layer, ctx):
        return runtime("Parameter", ("weight",), shape=tuple(layer.parameter_param.shape.dim))
