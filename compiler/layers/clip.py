"""Caffe's `Clip` layer (clamps x to [min, max]).

Runs as `netdef.runtime.pointwise.Clip`. Tested by `tests/test_rules.py` (test_rule[Clip]).
"""
from __future__ import annotations

from ._base import Issue, register
from ._pointwise import PointwiseRule
from ..modules import runtime

_P = ("clip_param",)


@register
class Clip(PointwiseRule):
    description = "clamps x to [min, max]"
    params = ("clip_param",)

    def check_params(self, layer):
        param = layer.clip_param
        for name in ("min", "max"):
            if not param.HasField(name):
                yield Issue(f"clip_param.{name} is required", _P)
        if param.HasField("min") and param.HasField("max") and param.min > param.max:
            yield Issue(f"min {param.min:g} is larger than max {param.max:g}", _P + ("min",))

    def lower(self, layer, ctx):
        return runtime("Clip", low=layer.clip_param.min, high=layer.clip_param.max)
