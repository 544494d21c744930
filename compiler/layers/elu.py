"""Caffe's `ELU` layer (x if x > 0 else alpha * (exp(x) - 1)).

Runs as `torch.nn.ELU`. Tested by `tests/test_rules.py` (test_rule[ELU]).
"""
from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule
from ..modules import torch_nn


@register
class ELU(PointwiseRule):
    description = "x if x > 0 else alpha * (exp(x) - 1)"
    params = ("elu_param",)

    def lower(self, layer, ctx):
        return torch_nn("ELU", alpha=layer.elu_param.alpha)
