from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule


@register
class BN(PointwiseRule):
    type_name = "BN"
    description = "dialect (PSPNet): batch normalisation fused with a per-channel scale and shift"
    family = "norm"
    params = ("bn_param",)
