from __future__ import annotations

from ._base import register
from ._broadcast import BroadcastRule


@register
class Scale(BroadcastRule):
    type_name = "Scale"
    description = "multiplies by a learned or given (bottom 1) factor over axes from axis; optional bias"
    params = ("scale_param",)

    def param(self, layer):
        return layer.scale_param
