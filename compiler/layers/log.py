"""Caffe's `Log` layer (log_base(shift + scale * x); base -1 means e).

Runs as `netdef.runtime.pointwise.Log`. Tested by `tests/test_rules.py` (test_rule[Log]), and in
`tests/test_fuzz_cases.py`.
"""
from __future__ import annotations

from ._base import Issue, register
from ._pointwise import PointwiseRule
from ..modules import runtime


@register
class Log(PointwiseRule):
    description = "log_base(shift + scale * x); base -1 means e"
    params = ("log_param",)

    def check_params(self, layer):
        base = layer.log_param.base
        if base != -1 and base <= 0:
            yield Issue(f"base must be -1 (for e) or positive, got {base:g}", ("log_param", "base"))
        elif base == 1:  # Caffe divides by log(1) = 0 and computes infinities
            yield Issue("base 1 has no logarithm (log(1) = 0); use -1 for e or another base",
                        ("log_param", "base"))

    def lower(self, layer, ctx):
        param = layer.log_param
        return runtime("Log", base=param.base, scale=param.scale, shift=param.shift)
