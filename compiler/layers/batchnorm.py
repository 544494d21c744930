from __future__ import annotations

from ._base import register
from ._pointwise import PointwiseRule


@register
class BatchNorm(PointwiseRule):
    type_name = "BatchNorm"
    description = "normalises by batch statistics, or by stored mean/variance (divided by the scale blob)"
    family = "norm"
    params = ("batch_norm_param",)

    def upgrade(self, layer) -> None:
        if len(layer.param) == 3:
            del layer.param[:]  # old nets froze the statistics blobs with three lr_mult 0 specs
