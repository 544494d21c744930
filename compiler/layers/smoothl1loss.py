"""py-faster-rcnn's `SmoothL1Loss` layer (dialect (py-faster-rcnn): Huber loss of weighted
differences (sigma), over the batch size).

Runs as `netdef.runtime.loss.SmoothL1Loss`. Tested by `tests/test_rules.py`
(test_rule[SmoothL1Loss]), and in `tests/test_detection.py`.
"""
from __future__ import annotations

from ._base import ShapeIssue, count, fmt, register
from ._loss import LossRule
from ..modules import runtime


@register
class SmoothL1Loss(LossRule):
    description = "dialect (py-faster-rcnn): Huber loss of weighted differences (sigma), over N"
    bottoms = (2, 4)  # prediction, target, and optionally inside and outside weights
    params = ("smooth_l1_loss_param", "loss_param")

    def check_label(self, layer, bottoms):
        for index, shape in enumerate(bottoms[1:], start=1):
            if count(shape) != count(bottoms[0]):
                raise ShapeIssue(f"bottom {index} ({fmt(shape)}) must match the prediction "
                                 f"{fmt(bottoms[0])}", ("bottom", index))

    def lower(self, layer, ctx):
        return runtime("SmoothL1Loss", sigma=layer.smooth_l1_loss_param.sigma)
