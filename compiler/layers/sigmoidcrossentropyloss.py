from __future__ import annotations

from ._base import register
from ._loss import LossRule, same_count, loss_settings
from ..modules import runtime


@register
class SigmoidCrossEntropyLoss(LossRule):
    description = "sigmoid + cross-entropy against targets in [0, 1]"
    params = ("loss_param", "sigmoid_param")

    def check_label(self, layer, bottoms):
        same_count(bottoms[0], bottoms[1])

    def lower(self, layer, ctx):
        return runtime("SigmoidCrossEntropyLoss", **loss_settings(layer))
