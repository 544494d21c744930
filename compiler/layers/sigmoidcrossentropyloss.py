"""Caffe's `SigmoidCrossEntropyLoss` layer (sigmoid + cross-entropy against targets in [0, 1]).

Runs as `netdef.runtime.loss.SigmoidCrossEntropyLoss`. Tested by `tests/test_rules.py`
(test_rule[SigmoidCrossEntropyLoss]), and in `tests/test_losses.py`.
"""
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
