"""Caffe's `Softmax` layer (softmax along axis (default 1, the channels)).

Runs as `torch.nn.Softmax`. Tested by `tests/test_rules.py` (test_rule[Softmax]), and in
`tests/compiler/test_receptive.py`, `tests/test_fast.py`, `tests/test_nsfw_model.py`.
"""
from __future__ import annotations

from ._base import canonical_axis, register
from ._pointwise import PointwiseRule
from ..modules import torch_nn


@register
class Softmax(PointwiseRule):
    description = "softmax along axis (default 1, the channels)"
    family = "norm"
    params = ("softmax_param",)

    def top_shapes(self, layer, bottoms):
        canonical_axis(layer.softmax_param.axis, len(bottoms[0]), ("softmax_param", "axis"))
        return [bottoms[0]]

    def spatial_map(self, layer, ctx):
        if ctx.keeps_positions(layer.softmax_param.axis):
            return ctx.passthrough(1)
        return [ctx.ended()]

    def lower(self, layer, ctx):
        return torch_nn("Softmax", dim=layer.softmax_param.axis)
