from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule


@register
class Sigmoid(PointwiseRule):
    type_name = "Sigmoid"
    description = "1 / (1 + exp(-x))"
    params = ("sigmoid_param",)
