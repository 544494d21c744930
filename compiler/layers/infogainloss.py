from __future__ import annotations

from ._base import Issue, register
from ._loss import LossRule, labels_per_position


@register
class InfogainLoss(LossRule):
    type_name = "InfogainLoss"
    description = "softmax + log loss weighted by an infogain matrix H (file or bottom 2)"
    bottoms = (2, 3)
    tops = (0, 2)
    params = ("loss_param", "infogain_loss_param")

    def check_params(self, layer):
        if len(layer.bottom) == 2 and not layer.infogain_loss_param.source:
            yield Issue("give the infogain matrix as a third bottom or infogain_loss_param.source",
                        ("infogain_loss_param",))

    def check_label(self, layer, bottoms):
        labels_per_position(bottoms[0], bottoms[1], layer.infogain_loss_param.axis)

    def extra_tops(self, layer, bottoms):
        return [bottoms[0]]
