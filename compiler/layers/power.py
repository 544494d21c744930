from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule


@register
class Power(PointwiseRule):
    type_name = "Power"
    description = "(shift + scale * x) ^ power"
    params = ("power_param",)
