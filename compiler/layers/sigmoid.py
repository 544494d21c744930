"""Caffe's `Sigmoid` layer (1 / (1 + exp(-x))).

Runs as `torch.nn.Sigmoid`. Tested by `tests/test_rules.py` (test_rule[Sigmoid]), and in
`tests/test_draw.py`.
"""
from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule
from ..modules import torch_nn


@register
class Sigmoid(PointwiseRule):
    description = "1 / (1 + exp(-x))"
    params = ("sigmoid_param",)

    def lower(self, layer, ctx):
        return torch_nn("Sigmoid")
