"""Caffe's `Reduction` layer (SUM, ASUM, SUMSQ or MEAN over axis and every axis after it).

Runs as `netdef.runtime.shape.Reduction`. Tested by `tests/test_rules.py`
(test_rule[Reduction]), and in `tests/test_more_layers.py`.
"""
from __future__ import annotations

from netdef.proto import netdef_pb2 as pb

from ._base import LayerRule, canonical_axis, register
from ..modules import runtime


@register
class Reduction(LayerRule):
    description = "SUM, ASUM, SUMSQ or MEAN over axis and every axis after it"
    family = "reshape"
    params = ("reduction_param",)

    def top_shapes(self, layer, bottoms):
        axis = canonical_axis(layer.reduction_param.axis, len(bottoms[0]),
                              ("reduction_param", "axis"))
        return [bottoms[0][:axis]]

    def lower(self, layer, ctx):
        param = layer.reduction_param
        return runtime("Reduction", operation=pb.ReductionParameter.ReductionOp.Name(param.operation),
                       axis=param.axis % len(ctx.bottom_shapes[0]), coeff=param.coeff)
