"""Caffe's `HingeLoss` layer (one-vs-all hinge loss (L1 or L2) for classification).

Runs as `netdef.runtime.loss.HingeLoss`. Tested by `tests/test_rules.py` (test_rule[HingeLoss]),
and in `tests/test_losses.py`.
"""
from __future__ import annotations

from netdef.proto import netdef_pb2 as pb

from ._base import register
from ._loss import LossRule, labels_per_item
from ..modules import runtime


@register
class HingeLoss(LossRule):
    description = "one-vs-all hinge loss (L1 or L2) for classification"
    params = ("loss_param", "hinge_loss_param")

    def check_label(self, layer, bottoms):
        labels_per_item(bottoms[0], bottoms[1])

    def lower(self, layer, ctx):
        return runtime("HingeLoss", squared=layer.hinge_loss_param.norm == pb.HingeLossParameter.L2)
