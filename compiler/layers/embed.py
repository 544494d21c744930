"""Caffe's `Embed` layer (looks up a learned num_output vector for each integer index in [0,
input_dim)).

Runs as `netdef.runtime.linear.Embed`. Tested by `tests/test_rules.py` (test_rule[Embed]), and
in `tests/test_fuzz_cases.py`, `tests/test_more_layers.py`.
"""
from __future__ import annotations

from ._base import Issue, LayerRule, register
from ..modules import runtime

_P = ("embed_param",)


@register
class Embed(LayerRule):
    description = "looks up a learned num_output vector for each integer index in [0, input_dim)"
    family = "conv"
    params = ("embed_param",)

    def check_params(self, layer):
        for name in ("num_output", "input_dim"):
            if getattr(layer.embed_param, name) == 0:
                yield Issue(f"{name} is required and must be positive", _P)

    def top_shapes(self, layer, bottoms):
        return [bottoms[0] + (layer.embed_param.num_output,)]

    def learned_shapes(self, layer, bottoms):
        param = layer.embed_param
        return [(param.input_dim, param.num_output), (param.num_output,)][:1 + param.bias_term]

    def lower(self, layer, ctx):
        param = layer.embed_param
        return runtime("Embed", ("weight", "bias") if param.bias_term else ("weight",),
                       input_dim=param.input_dim, num_output=param.num_output,
                       bias=param.bias_term)

    def fillers(self, layer):
        param = layer.embed_param
        return ((param.weight_filler, 0.0), (param.bias_filler, 0.0))[:1 + param.bias_term]
