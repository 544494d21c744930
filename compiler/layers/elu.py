from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule


@register
class ELU(PointwiseRule):
    type_name = "ELU"
    description = "x if x > 0 else alpha * (exp(x) - 1)"
    params = ("elu_param",)
