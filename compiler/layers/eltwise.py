"""Caffe's `Eltwise` layer (elementwise PROD, SUM (with coeff per bottom) or MAX of equally shaped
bottoms).

Runs as `netdef.runtime.shape.Eltwise`. Tested by `tests/test_rules.py` (test_rule[Eltwise]),
and in `tests/compiler/test_receptive.py`, `tests/test_train.py`.
"""
from __future__ import annotations

from netdef.proto import netdef_pb2 as pb

from ._base import Issue, LayerRule, register, require_same_shapes
from ..modules import runtime

_P = ("eltwise_param",)


@register
class Eltwise(LayerRule):
    description = "elementwise PROD, SUM (with coeff per bottom) or MAX of equally shaped bottoms"
    family = "merge"
    bottoms = (2, None)
    params = ("eltwise_param",)

    def check_params(self, layer):
        param = layer.eltwise_param
        if param.coeff and param.operation != pb.EltwiseParameter.SUM:
            yield Issue("coeff only applies to operation: SUM", _P + ("coeff", 0))
        elif param.coeff and len(param.coeff) != len(layer.bottom):
            yield Issue(f"{len(param.coeff)} coeff values for {len(layer.bottom)} bottoms; give one "
                        "per bottom", _P + ("coeff", 0))

    def top_shapes(self, layer, bottoms):
        require_same_shapes(bottoms)
        return [bottoms[0]]

    def spatial_map(self, layer, ctx):
        return [ctx.merged()]

    def summary(self, layer):
        param = layer.eltwise_param
        name = pb.EltwiseParameter.EltwiseOp.Name(param.operation)
        return name + (" " + ", ".join(f"{c:g}" for c in param.coeff) if param.coeff else "")

    def lower(self, layer, ctx):
        param = layer.eltwise_param
        return runtime("Eltwise", operation=pb.EltwiseParameter.EltwiseOp.Name(param.operation),
                       coeffs=tuple(param.coeff))
