from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule
from ._lowering import runtime


@register
class AbsVal(PointwiseRule):
    type_name = "AbsVal"
    description = "|x|"
    params = ()

    def lower(self, layer, ctx):
        return runtime("AbsVal")
