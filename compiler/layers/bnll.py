from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule
from ._lowering import torch_nn


@register
class BNLL(PointwiseRule):
    type_name = "BNLL"
    description = "log(1 + exp(x)), the binomial normal log likelihood"
    params = ()

    def lower(self, layer, ctx):
        return torch_nn("Softplus")  # log(1 + exp(x))
