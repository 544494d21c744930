"""Caffe's `LRN` layer (local response normalisation across channels (alpha / n) or within a
channel (alpha / n^2)).

Runs as `netdef.runtime.normalization.WithinChannelLRN` or `torch.nn.LocalResponseNorm`. Tested
by `tests/test_rules.py` (test_rule[LRN]), and in `tests/compiler/test_receptive.py`,
`tests/test_fuzz_cases.py`, `tests/test_layer_zoo.py`.
"""
from __future__ import annotations

from netdef.proto import netdef_pb2 as pb

from ._base import Issue, ShapeIssue, fmt, register
from ._pointwise import PointwiseRule
from ..spatial import map_axes
from ..modules import runtime, torch_nn

_P = ("lrn_param",)


@register
class LRN(PointwiseRule):
    description = "local response normalisation across channels (alpha / n) or within a channel (alpha / n^2)"
    family = "norm"
    params = ("lrn_param",)

    def check_params(self, layer):
        size = layer.lrn_param.local_size
        if size % 2 == 0:
            yield Issue(f"local_size must be odd, got {size}", _P + ("local_size",))
        elif size > 2**31 - 1:  # Caffe reads it into an int: larger values turn negative
            yield Issue(f"local_size {size} is out of range (at most 2^31 - 1)",
                        _P + ("local_size",))

    def top_shapes(self, layer, bottoms):
        if len(bottoms[0]) != 4:
            raise ShapeIssue(f"LRN takes N x C x H x W blobs, got {fmt(bottoms[0])}")
        return [bottoms[0]]

    def spatial_map(self, layer, ctx):
        param = layer.lrn_param
        if param.norm_region == pb.LRNParameter.ACROSS_CHANNELS:
            return ctx.passthrough(1)
        size = param.local_size  # WITHIN_CHANNEL: a local_size window, centred by padding

        def through(maps):
            return tuple(m.window(size, 1, (size - 1) // 2) for m in maps)
        return [map_axes(ctx.bottoms[0].field, through)]

    def summary(self, layer):
        return f"size {layer.lrn_param.local_size}"

    def lower(self, layer, ctx):
        param = layer.lrn_param
        if param.norm_region == pb.LRNParameter.ACROSS_CHANNELS:  # alpha / size, as torch's
            return torch_nn("LocalResponseNorm", size=param.local_size, alpha=param.alpha,
                            beta=param.beta, k=param.k)
        return runtime("WithinChannelLRN", size=param.local_size, alpha=param.alpha, beta=param.beta)
