"""Caffe's `Dropout` layer (zeroes a dropout_ratio share at train time and scales the rest;
identity at test).

Runs as `torch.nn.Dropout`. Tested by `tests/test_rules.py` (test_rule[Dropout]).
"""
from __future__ import annotations

from ._base import Issue, register
from ._pointwise import PointwiseRule
from ..modules import runtime, torch_nn


@register
class Dropout(PointwiseRule):
    description = "zeroes a dropout_ratio share at train time and scales the rest; identity at test"
    params = ("dropout_param",)

    def check_params(self, layer):
        ratio = layer.dropout_param.dropout_ratio
        if not 0.0 <= ratio < 1.0:
            yield Issue(f"dropout_ratio must lie in [0, 1), got {ratio:g}",
                        ("dropout_param", "dropout_ratio"))

    def summary(self, layer):
        return f"{layer.dropout_param.dropout_ratio:g}"

    def lower(self, layer, ctx):
        param = layer.dropout_param
        if not param.scale_train:  # py-faster-rcnn: scale at test time instead
            return runtime("UnscaledDropout", p=param.dropout_ratio)
        return torch_nn("Dropout", p=param.dropout_ratio)  # scales at train time
