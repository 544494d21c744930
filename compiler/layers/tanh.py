from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule
from ._lowering import torch_nn


@register
class TanH(PointwiseRule):
    type_name = "TanH"
    description = "tanh(x)"
    params = ("tanh_param",)

    def lower(self, layer, ctx):
        return torch_nn("Tanh")
