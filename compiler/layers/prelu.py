from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule


@register
class PReLU(PointwiseRule):
    type_name = "PReLU"
    description = "ReLU with a learned negative slope per channel (or one shared)"
    params = ("prelu_param",)
