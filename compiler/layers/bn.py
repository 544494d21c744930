"""Caffe's `BN` layer (dialect (PSPNet): batch normalisation fused with a per-channel scale and
shift).

Runs as `netdef.runtime.normalization.BN`. Tested by `tests/test_rules.py` (test_rule[BN]), and
in `tests/test_fuzz_cases.py`, `tests/test_more_layers.py`.
"""
from __future__ import annotations

from ._base import ShapeIssue, fmt, register
from ._pointwise import PointwiseRule
from ..modules import runtime


@register
class BN(PointwiseRule):
    description = "dialect (PSPNet): batch normalisation fused with a per-channel scale and shift"
    family = "norm"
    params = ("bn_param",)

    def top_shapes(self, layer, bottoms):
        if len(bottoms[0]) < 2:
            raise ShapeIssue(f"needs a channel axis (N x C x ...), got a {fmt(bottoms[0])} blob")
        return [bottoms[0]]

    def learned_shapes(self, layer, bottoms):
        return [(1, bottoms[0][1], 1, 1)] * 4  # scale, shift, mean, variance

    def lower(self, layer, ctx):
        return runtime("BN", ("scale", "shift", "mean", "variance"),
                       channels=ctx.bottom_shapes[0][1], eps=layer.bn_param.eps)

    def fillers(self, layer):
        param = layer.bn_param
        return ((param.slope_filler if param.HasField("slope_filler") else None, 1.0),
                (param.bias_filler, 0.0), (None, 0.0), (None, 1.0))
