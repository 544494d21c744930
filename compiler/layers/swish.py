from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule
from ..modules import runtime


@register
class Swish(PointwiseRule):
    description = "x * sigmoid(beta * x)"
    params = ("swish_param",)

    def lower(self, layer, ctx):
        return runtime("Swish", beta=layer.swish_param.beta)
