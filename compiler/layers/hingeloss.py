from __future__ import annotations

from ._base import register
from ._loss import LossRule, labels_per_item


@register
class HingeLoss(LossRule):
    type_name = "HingeLoss"
    description = "one-vs-all hinge loss (L1 or L2) for classification"
    params = ("loss_param", "hinge_loss_param")

    def check_label(self, layer, bottoms):
        labels_per_item(bottoms[0], bottoms[1])
