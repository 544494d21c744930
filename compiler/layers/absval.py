"""Caffe's `AbsVal` layer (|x|).

Runs as `netdef.runtime.pointwise.AbsVal`. Tested by `tests/test_rules.py` (test_rule[AbsVal]).
"""
from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule
from ..modules import runtime


@register
class AbsVal(PointwiseRule):
    description = "|x|"
    params = ()

    def lower(self, layer, ctx):
        return runtime("AbsVal")
