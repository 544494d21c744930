"""ParseNet's `ParseEvaluate` layer (dialect (ParseNet): per-class counts of a segmentation
for its evaluation).

Checked, not run (its output layout is the fork's evaluation code's). Tested by
`tests/test_rules.py` (test_rule[ParseEvaluate]), and in `tests/test_forks.py`.
"""
from __future__ import annotations

from ._base import Issue, register
from ._loss import LossRule

_P = ("parse_evaluate_param",)


@register
class ParseEvaluate(LossRule):
    description = "dialect (ParseNet): per-class counts of a segmentation for its evaluation"
    tops = (1, 1)
    loss_weight = 0.0  # a metric, not an objective
    params = ("parse_evaluate_param",)

    def check_params(self, layer):
        if not layer.parse_evaluate_param.num_labels:
            yield Issue("num_labels is required and must be positive", _P)

    def top_shapes(self, layer, bottoms):
        return [None]
