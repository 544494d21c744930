"""Caffe's `Exp` layer (base ^ (shift + scale * x); base -1 means e).

Runs as `netdef.runtime.pointwise.Exp`. Tested by `tests/test_rules.py` (test_rule[Exp]).
"""
from __future__ import annotations

from ._base import Issue, register
from ._pointwise import PointwiseRule
from ..modules import runtime


@register
class Exp(PointwiseRule):
    description = "base ^ (shift + scale * x); base -1 means e"
    params = ("exp_param",)

    def check_params(self, layer):
        base = layer.exp_param.base
        if base != -1 and base <= 0:
            yield Issue(f"base must be -1 (for e) or positive, got {base:g}", ("exp_param", "base"))

    def lower(self, layer, ctx):
        param = layer.exp_param
        return runtime("Exp", base=param.base, scale=param.scale, shift=param.shift)
