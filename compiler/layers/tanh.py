"""Caffe's `TanH` layer (tanh(x)).

Runs as `torch.nn.Tanh`. Tested by `tests/test_rules.py` (test_rule[TanH]), and in
`tests/compiler/layers/test_shape_rules.py`.
"""
from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule
from ..modules import torch_nn


@register
class TanH(PointwiseRule):
    description = "tanh(x)"
    params = ("tanh_param",)

    def lower(self, layer, ctx):
        return torch_nn("Tanh")
