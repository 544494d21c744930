"""ParseNet's `UnPooling` layer (dialect (ParseNet): spreads each value over an output window
(REP, DIV or FIXED); with a second bottom, up to that bottom's size).

Runs as `netdef.runtime.pooling.UnPooling`. Tested by `tests/test_rules.py`
(test_rule[UnPooling]), and in `tests/test_forks.py`.
"""
from __future__ import annotations

from netdef.proto import netdef_pb2 as pb

from ._base import Issue, LayerRule, ShapeIssue, fmt, register
from ..spatial import map_axes
from ..window import _scalar_pair
from ..modules import runtime

_P = ("unpooling_param",)


def unpool_window(layer, bottoms) -> tuple:
    """(kernel, stride, pad) pairs: the parameters', or derived from the second bottom."""
    if len(bottoms) == 2:  # kernel and stride ceil(H2 / H), stride 1 when that is H2
        size, like = bottoms[0][2:], bottoms[1][2:]
        kernel = tuple(-(-big // small) for small, big in zip(size, like))
        stride = tuple(1 if k == big else k for k, big in zip(kernel, like))
        pad = tuple(((small - 1) * s + k - big) // 2
                    for small, s, k, big in zip(size, stride, kernel, like))
        return kernel, stride, pad
    param = layer.unpooling_param
    kernel = _scalar_pair(param, "out_kernel", "out_kernel_size", None, _P)
    return (kernel, _scalar_pair(param, "out_stride", "out_stride", 1, _P),
            _scalar_pair(param, "out_pad", "out_pad", 0, _P))


@register
class UnPooling(LayerRule):
    description = ("dialect (ParseNet): spreads each value over an output window (REP, DIV or "
                   "FIXED); with a second bottom, up to that bottom's size")
    family = "pool"
    bottoms = (1, 2)
    params = ("unpooling_param",)

    def check_params(self, layer):
        param = layer.unpooling_param
        if len(layer.bottom) == 1 and not (param.out_kernel_size or param.out_kernel_h):
            yield Issue("out_kernel_size (or out_kernel_h and out_kernel_w) is required with one "
                        "bottom", _P)

    def top_shapes(self, layer, bottoms):
        if any(len(shape) != 4 for shape in bottoms):
            raise ShapeIssue(f"UnPooling takes N x C x H x W blobs, got {fmt(bottoms[0])}")
        kernel, stride, pad = unpool_window(layer, bottoms)
        if 0 in kernel + stride:
            raise ShapeIssue("kernel and stride must be positive", _P)
        if any(p and p >= k for p, k in zip(pad, kernel)):
            raise ShapeIssue(f"pad {fmt(pad)} must be smaller than the kernel {fmt(kernel)}", _P)
        size = tuple((n - 1) * s - 2 * p + k
                     for n, s, p, k in zip(bottoms[0][2:], stride, pad, kernel))
        if min(size) <= 0:
            raise ShapeIssue(f"the output would be {fmt(size)}", _P)
        return [bottoms[0][:2] + size]

    def spatial_map(self, layer, ctx):
        shapes = [b.shape for b in ctx.bottoms]
        if any(s is None for s in shapes):
            return [ctx.ended()]
        kernel, stride, pad = unpool_window(layer, shapes)

        def through(maps):
            if len(maps) != 2:
                return None
            return tuple(m.transposed_window(kernel[a], stride[a], pad[a])
                         for a, m in enumerate(maps))
        return [map_axes(ctx.bottoms[0].field, through)]

    def summary(self, layer):
        return pb.UnPoolingParameter.UnPoolMethod.Name(layer.unpooling_param.unpool)

    def lower(self, layer, ctx):
        method = pb.UnPoolingParameter.UnPoolMethod.Name(layer.unpooling_param.unpool)
        kernel, stride, pad = unpool_window(layer, ctx.bottom_shapes)
        return runtime("UnPooling", method=method, kernel=kernel, stride=stride, pad=pad)
