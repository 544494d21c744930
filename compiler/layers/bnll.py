"""Caffe's `BNLL` layer (log(1 + exp(x)), the binomial normal log likelihood).

Runs as `torch.nn.Softplus`. Tested by `tests/test_rules.py` (test_rule[BNLL]).
"""
from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule
from ..modules import torch_nn


@register
class BNLL(PointwiseRule):
    description = "log(1 + exp(x)), the binomial normal log likelihood"
    params = ()

    def lower(self, layer, ctx):
        return torch_nn("Softplus")  # log(1 + exp(x))
