from __future__ import annotations

from ._base import register
from ._broadcast import BroadcastRule


@register
class Bias(BroadcastRule):
    type_name = "Bias"
    description = "adds a learned or given (bottom 1) term over axes from axis"
    params = ("bias_param",)

    def param(self, layer):
        return layer.bias_param
