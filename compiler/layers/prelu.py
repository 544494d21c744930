"""Caffe's `PReLU` layer (ReLU with a learned negative slope per channel (or one shared)).

Runs as `torch.nn.PReLU`. Tested by `tests/test_rules.py` (test_rule[PReLU]), and in
`tests/compiler/test_fillers.py`.
"""
from __future__ import annotations

from ._base import ShapeIssue, fmt, register
from ._pointwise import PointwiseRule
from ..modules import torch_nn


@register
class PReLU(PointwiseRule):
    description = "ReLU with a learned negative slope per channel (or one shared)"
    params = ("prelu_param",)

    def top_shapes(self, layer, bottoms):
        if len(bottoms[0]) < 2:  # Caffe: CHECK_GE(num_axes, 2)
            raise ShapeIssue(f"needs a channel axis (N x C x ...), got a {fmt(bottoms[0])} blob")
        return [bottoms[0]]

    def learned_shapes(self, layer, bottoms):
        return [(1 if layer.prelu_param.channel_shared else bottoms[0][1],)]

    def lower(self, layer, ctx):
        channels = 1 if layer.prelu_param.channel_shared else ctx.bottom_shapes[0][1]
        return torch_nn("PReLU", ("weight",), num_parameters=channels, init=0.25)

    def fillers(self, layer):
        param = layer.prelu_param
        return ((param.filler if param.HasField("filler") else None, 0.25),)
