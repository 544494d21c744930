"""Caffe's `ContrastiveLoss` layer (siamese loss on two feature bottoms and a similar/dissimilar
label).

Runs as `netdef.runtime.loss.ContrastiveLoss`. Tested by `tests/test_rules.py`
(test_rule[ContrastiveLoss]), and in `tests/test_losses.py`.
"""
from __future__ import annotations

from ._base import register
from ._loss import LossRule, labels_per_item, same_count
from ..modules import runtime


@register
class ContrastiveLoss(LossRule):
    description = "siamese loss on two feature bottoms and a similar/dissimilar label"
    bottoms = (3, 3)
    params = ("loss_param", "contrastive_loss_param")

    def check_label(self, layer, bottoms):
        same_count(bottoms[0], bottoms[1])
        labels_per_item(bottoms[0], bottoms[2])

    def lower(self, layer, ctx):
        param = layer.contrastive_loss_param
        return runtime("ContrastiveLoss", margin=param.margin, legacy=param.legacy_version)
