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
