from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule


@register
class AbsVal(PointwiseRule):
    type_name = "AbsVal"
    description = "|x|"
    params = ()
