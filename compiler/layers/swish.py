from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule


@register
class Swish(PointwiseRule):
    type_name = "Swish"
    description = "x * sigmoid(beta * x)"
    params = ("swish_param",)
