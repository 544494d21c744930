"""Caffe's `SoftmaxWithLoss` layer (softmax + multinomial log loss; ignore_label and normalization
modes).

Runs as `netdef.runtime.loss.SoftmaxWithLoss`. Tested by `tests/test_rules.py`
(test_rule[SoftmaxWithLoss]), and in `tests/test_data.py`, `tests/test_losses.py`,
`tests/test_models.py`.
"""
from __future__ import annotations

from ._base import register
from ._loss import LossRule, labels_per_position, loss_settings
from ..modules import runtime


@register
class SoftmaxWithLoss(LossRule):
    description = "softmax + multinomial log loss; ignore_label and normalization modes"
    tops = (0, 2)  # the optional second top is the softmax output
    params = ("loss_param", "softmax_param")

    def check_label(self, layer, bottoms):
        labels_per_position(bottoms[0], bottoms[1], layer.softmax_param.axis)

    def extra_tops(self, layer, bottoms):
        return [bottoms[0]]

    def lower(self, layer, ctx):
        axis = layer.softmax_param.axis % len(ctx.bottom_shapes[0])
        return runtime("SoftmaxWithLoss", axis=axis, with_prob=len(layer.top) == 2,
                       **loss_settings(layer))
