"""Caffe's `Accuracy` layer (top_k classification accuracy (second top: accuracy per class)).

Runs as `netdef.runtime.loss.Accuracy`. Tested by `tests/test_rules.py` (test_rule[Accuracy]),
and in `tests/test_losses.py`, `tests/test_train.py`.
"""
from __future__ import annotations

from ._base import Issue, canonical_axis, register
from ._loss import LossRule, labels_per_position
from ..modules import runtime


@register
class Accuracy(LossRule):
    description = "top_k classification accuracy (second top: accuracy per class)"
    family = "loss"
    loss_weight = 0.0  # a metric, not an objective
    tops = (1, 2)
    params = ("accuracy_param",)

    def check_params(self, layer):
        if layer.accuracy_param.top_k == 0:
            yield Issue("top_k must be positive, got 0", ("accuracy_param", "top_k"))

    def check_label(self, layer, bottoms):
        labels_per_position(bottoms[0], bottoms[1], layer.accuracy_param.axis)

    def extra_tops(self, layer, bottoms):
        axis = canonical_axis(layer.accuracy_param.axis, len(bottoms[0]))
        return [(bottoms[0][axis],)]

    def lower(self, layer, ctx):
        param = layer.accuracy_param
        ignore = param.ignore_label if param.HasField("ignore_label") else None
        return runtime("Accuracy", axis=param.axis % len(ctx.bottom_shapes[0]), top_k=param.top_k,
                       ignore_label=ignore, per_class=len(layer.top) == 2)
