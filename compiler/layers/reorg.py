"""The YOLOv2 ports' `Reorg` layer (dialect (gklz1982/caffe-yolov2): darknet's passthrough,
stride x stride cells into channels, in darknet's channel order).

Runs as `netdef.runtime.shape.Reorg`. Tested by `tests/test_rules.py` (test_rule[Reorg]), and in
`tests/test_forks.py`.
"""
from __future__ import annotations

from ._base import Issue, LayerRule, ShapeIssue, fmt, register
from ..modules import runtime

_P = ("reorg_param",)


@register
class Reorg(LayerRule):
    description = ("dialect (gklz1982/caffe-yolov2): darknet's passthrough, stride x stride "
                   "cells into channels, in darknet's channel order")
    family = "reshape"
    params = ("reorg_param",)

    def check_params(self, layer):
        if not layer.reorg_param.HasField("stride"):
            yield Issue("stride is required", _P)
        elif layer.reorg_param.stride == 0:
            yield Issue("stride must be positive, got 0", _P + ("stride",))

    def top_shapes(self, layer, bottoms):
        shape, s = bottoms[0], layer.reorg_param.stride
        if len(shape) != 4:
            raise ShapeIssue(f"Reorg takes N x C x H x W blobs, got {fmt(shape)}")
        if s == 0:
            return [None]
        n, c, h, w = shape
        if layer.reorg_param.reverse:
            if c % (s * s):
                raise ShapeIssue(f"{c} channels do not fold into {s}x{s} cells", _P + ("stride",))
            return [(n, c // (s * s), h * s, w * s)]
        if h % s or w % s or c % (s * s):
            raise ShapeIssue(f"darknet's reorg needs height and width divisible by the stride {s} "
                             f"and channels by {s * s}; got {fmt(shape)}", _P + ("stride",))
        return [(n, c * s * s, h // s, w // s)]

    def summary(self, layer):
        return f"stride {layer.reorg_param.stride}" + (" reverse" if layer.reorg_param.reverse
                                                       else "")

    def lower(self, layer, ctx):
        return runtime("Reorg", stride=layer.reorg_param.stride,
                       reverse=layer.reorg_param.reverse)
