from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule
from ..modules import torch_nn


@register
class Sigmoid(PointwiseRule):
    description = "1 / (1 + exp(-x))"
    params = ("sigmoid_param",)

    def lower(self, layer, ctx):
        return torch_nn("Sigmoid")
