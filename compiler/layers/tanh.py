from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule


@register
class TanH(PointwiseRule):
    type_name = "TanH"
    description = "tanh(x)"
    params = ("tanh_param",)
