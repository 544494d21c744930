"""Caffe's `Swish` layer (x * sigmoid(beta * x)).

Runs as `netdef.runtime.pointwise.Swish`. Tested by `tests/test_rules.py` (test_rule[Swish]).
"""
from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule
from ..modules import runtime


@register
class Swish(PointwiseRule):
    description = "x * sigmoid(beta * x)"
    params = ("swish_param",)

    def lower(self, layer, ctx):
        return runtime("Swish", beta=layer.swish_param.beta)
