"""Caffe's `MVN` layer (mean (and variance) normalisation per sample, per channel or across
channels).

Runs as `netdef.runtime.normalization.MVN`. Tested by `tests/test_rules.py` (test_rule[MVN]).
"""
from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule
from ..modules import runtime


@register
class MVN(PointwiseRule):
    description = "mean (and variance) normalisation per sample, per channel or across channels"
    family = "norm"
    params = ("mvn_param",)

    def spatial_map(self, layer, ctx):
        return [ctx.ended()]  # the mean and variance are taken over every position

    def lower(self, layer, ctx):
        param = layer.mvn_param
        return runtime("MVN", normalize_variance=param.normalize_variance,
                       across_channels=param.across_channels, eps=param.eps)
