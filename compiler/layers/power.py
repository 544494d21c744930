"""Caffe's `Power` layer ((shift + scale * x) ^ power).

Runs as `netdef.runtime.pointwise.Power`. Tested by `tests/test_rules.py` (test_rule[Power]),
and in `tests/compiler/test_textformat.py`, `tests/test_run_images.py`.
"""
from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule
from ..modules import runtime


@register
class Power(PointwiseRule):
    description = "(shift + scale * x) ^ power"
    params = ("power_param",)

    def lower(self, layer, ctx):
        param = layer.power_param
        return runtime("Power", power=param.power, scale=param.scale, shift=param.shift)
