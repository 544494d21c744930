from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule


@register
class Threshold(PointwiseRule):
    type_name = "Threshold"
    description = "1 if x > threshold else 0"
    params = ("threshold_param",)
