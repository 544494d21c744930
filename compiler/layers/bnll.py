from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule


@register
class BNLL(PointwiseRule):
    type_name = "BNLL"
    description = "log(1 + exp(x)), the binomial normal log likelihood"
    params = ()
