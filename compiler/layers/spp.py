"""Caffe's `SPP` layer (spatial pyramid pooling: levels of 1, 2x2, 4x4... bins, flattened and
concatenated).

Runs as `netdef.runtime.pooling.SPP`. Tested by `tests/test_rules.py` (test_rule[SPP]), and in
`tests/test_sequence_region_layers.py`.
"""
from __future__ import annotations

from netdef.proto import netdef_pb2 as pb

from ._base import Issue, LayerRule, ShapeIssue, fmt, register
from ..modules import LoweringIssue, runtime
from .pooling import pooled_size

_P = ("spp_param",)


@register
class SPP(LayerRule):
    description = "spatial pyramid pooling: levels of 1, 2x2, 4x4... bins, flattened and concatenated"
    family = "pool"
    params = ("spp_param",)

    def check_params(self, layer):
        if layer.spp_param.pyramid_height == 0:
            yield Issue("pyramid_height is required and must be positive", _P)

    def top_shapes(self, layer, bottoms):
        shape = bottoms[0]
        if len(shape) != 4:
            raise ShapeIssue(f"SPP takes N x C x H x W blobs, got {fmt(shape)}")
        levels = pyramid(layer.spp_param.pyramid_height, shape[2:])
        if len(levels) == 1:
            return [shape[:2] + levels[0]["out_size"]]
        bins = sum(level["out_size"][0] * level["out_size"][1] for level in levels)
        return [(shape[0], shape[1] * bins)]

    def lower(self, layer, ctx):
        method = pb.SPPParameter.PoolMethod.Name(layer.spp_param.pool)
        if method == "STOCHASTIC":
            raise LoweringIssue("STOCHASTIC spatial pyramid pooling cannot run yet", _P + ("pool",))
        levels = pyramid(layer.spp_param.pyramid_height, ctx.bottom_shapes[0][2:])
        return runtime("SPP", levels=[dict(level, method=method) for level in levels])

    def summary(self, layer):
        return f"{layer.spp_param.pyramid_height} levels"


def pyramid(height: int, size: tuple) -> list[dict]:
    """Caffe's pooling window per level: 2^l bins, kernel ceil(size / bins), stride = kernel,
    pad (kernel * bins - size + 1) // 2; Caffe refuses a pad as large as the kernel."""
    levels = []
    for level in range(height):
        bins = 2 ** level
        kernel = tuple(-(-n // bins) for n in size)
        pad = tuple((k * bins - n + 1) // 2 for k, n in zip(kernel, size))
        for axis, name in enumerate(("height", "width")):
            if pad[axis] >= kernel[axis]:
                raise ShapeIssue(f"level {level} ({bins} bins) needs pad {pad[axis]} >= kernel "
                                 f"{kernel[axis]} along {name} {size[axis]}: the input is too "
                                 "small for this pyramid", _P + ("pyramid_height",))
        out = tuple(pooled_size(n, k, k, p, True, name)
                    for n, k, p, name in zip(size, kernel, pad, ("height", "width")))
        levels.append(dict(kernel=kernel, stride=kernel, pad=pad, in_size=tuple(size),
                           out_size=out))
    return levels
