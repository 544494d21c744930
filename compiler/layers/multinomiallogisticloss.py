"""Caffe's `MultinomialLogisticLoss` layer (-log(probability of the true class), on probabilities).

Runs as `netdef.runtime.loss.MultinomialLogisticLoss`. Tested by `tests/test_rules.py`
(test_rule[MultinomialLogisticLoss]), and in `tests/test_losses.py`.
"""
from __future__ import annotations

from ._base import register
from ._loss import LossRule, labels_per_item
from ..modules import runtime


@register
class MultinomialLogisticLoss(LossRule):
    description = "-log(probability of the true class), on probabilities"

    def check_label(self, layer, bottoms):
        labels_per_item(bottoms[0], bottoms[1])

    def lower(self, layer, ctx):
        return runtime("MultinomialLogisticLoss")
