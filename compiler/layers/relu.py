from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule


@register
class ReLU(PointwiseRule):
    type_name = "ReLU"
    description = "max(x, 0) + negative_slope * min(x, 0)"
    params = ("relu_param",)
