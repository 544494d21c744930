"""Caffe's `Threshold` layer (1 if x > threshold else 0).

Runs as `netdef.runtime.pointwise.Threshold`. Tested by `tests/test_rules.py`
(test_rule[Threshold]).
"""
from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule
from ..modules import runtime


@register
class Threshold(PointwiseRule):
    description = "1 if x > threshold else 0"
    params = ("threshold_param",)

    def lower(self, layer, ctx):
        return runtime("Threshold", threshold=layer.threshold_param.threshold)
