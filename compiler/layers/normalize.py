"""SSD's and ParseNet's `Normalize` layer (dialect (SSD, ParseNet): L2 normalisation per item
or per position, then a learned scale).

Runs as `netdef.runtime.normalization.Normalize`. Tested by `tests/test_rules.py`
(test_rule[Normalize]), and in `tests/test_forks.py`.
"""
from __future__ import annotations

from ._base import Issue, ShapeIssue, fmt, register
from ._pointwise import PointwiseRule
from ..modules import runtime

_P = ("norm_param",)


@register
class Normalize(PointwiseRule):
    description = ("dialect (SSD, ParseNet): L2 normalisation per item or per position, then a "
                   "learned scale")
    family = "norm"
    params = ("norm_param",)

    def check_params(self, layer):
        if layer.norm_param.eps < 0:
            yield Issue(f"eps must not be negative, got {layer.norm_param.eps:g}", _P + ("eps",))

    def top_shapes(self, layer, bottoms):
        if len(bottoms[0]) < 2:
            raise ShapeIssue(f"needs a channel axis (N x C x ...), got {fmt(bottoms[0])}")
        return [bottoms[0]]

    def spatial_map(self, layer, ctx):
        if layer.norm_param.across_spatial:
            return [ctx.ended()]  # one norm over every position
        return ctx.passthrough(1)

    def learned_shapes(self, layer, bottoms):
        return [(1 if layer.norm_param.channel_shared else bottoms[0][1],)]

    def summary(self, layer):
        param = layer.norm_param
        return ("across spatial" if param.across_spatial else "per position") + (
            ", shared scale" if param.channel_shared else "")

    def lower(self, layer, ctx):
        param = layer.norm_param
        channels = 1 if param.channel_shared else ctx.bottom_shapes[0][1]
        return runtime("Normalize", ("weight",), channels=channels,
                       across_spatial=param.across_spatial, eps=param.eps)

    def fillers(self, layer):
        param = layer.norm_param
        return ((param.scale_filler if param.HasField("scale_filler") else None, 1.0),)
