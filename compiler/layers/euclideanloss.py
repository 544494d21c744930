"""Caffe's `EuclideanLoss` layer (sum of squared differences / (2N)).

Runs as `netdef.runtime.loss.EuclideanLoss`. Tested by `tests/test_rules.py`
(test_rule[EuclideanLoss]), and in `tests/test_architecture.py`, `tests/test_losses.py`,
`tests/test_solver.py`.
"""
from __future__ import annotations

from ._base import register
from ._loss import LossRule, same_count
from ..modules import runtime


@register
class EuclideanLoss(LossRule):
    description = "sum of squared differences / (2N)"

    def check_label(self, layer, bottoms):
        same_count(bottoms[0], bottoms[1], start=1)

    def lower(self, layer, ctx):
        return runtime("EuclideanLoss")
