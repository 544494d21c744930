"""Caffe's `ReLU` layer (max(x, 0) + negative_slope * min(x, 0)).

Runs as `torch.nn.LeakyReLU` or `torch.nn.ReLU`. Tested by `tests/test_rules.py`
(test_rule[ReLU]), and in `tests/compiler/layers/test_shape_rules.py`,
`tests/compiler/test_textformat.py`, `tests/test_cli.py`.
"""
from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule
from ..modules import torch_nn


@register
class ReLU(PointwiseRule):
    description = "max(x, 0) + negative_slope * min(x, 0)"
    params = ("relu_param",)

    def lower(self, layer, ctx):
        slope = layer.relu_param.negative_slope
        return torch_nn("LeakyReLU", negative_slope=slope) if slope else torch_nn("ReLU")
