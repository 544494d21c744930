"""Caffe's `SegAccuracy` layer (dialect (DeepLab): pixel accuracy, class accuracy or IoU of a
segmentation).

Checked and shaped, but not run: lowering refuses it with a located error. Tested by
`tests/test_rules.py` (test_rule[SegAccuracy]).
"""
from __future__ import annotations

from ._base import register
from ._loss import LossRule


@register
class SegAccuracy(LossRule):
    description = "dialect (DeepLab): pixel accuracy, class accuracy or IoU of a segmentation"
    tops = (1, 1)
    loss_weight = 0.0  # a metric, not an objective
    params = ("seg_accuracy_param",)

    def top_shapes(self, layer, bottoms):
        return [None]  # a metric vector whose length DeepLab's code decides
