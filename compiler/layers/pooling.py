"""Caffe's `Pooling` layer (max/average/stochastic pooling; Caffe's ceil rounding with the padding
correction).

Runs as `netdef.runtime.pooling.StochasticPool` or `netdef.runtime.pooling.CaffePool` or
`torch.nn.AdaptiveMaxPool2d` or `torch.nn.AdaptiveAvgPool2d` or `torch.nn.MaxPool2d` or
`torch.nn.AvgPool2d`. Tested by `tests/test_rules.py` (test_rule[Pooling]), and in
`tests/compiler/layers/test_shape_rules.py`, `tests/compiler/layers/test_window_oracle.py`,
`tests/compiler/test_receptive.py`.
"""
from __future__ import annotations

import math

from netdef.proto import netdef_pb2 as pb

from ._base import Issue, LayerRule, ShapeIssue, fmt, register, zero_fields
from ..spatial import map_axes
from ..window import pool_window, window_text
from ..modules import LoweringIssue, runtime, torch_nn

_P = ("pooling_param",)


@register
class Pooling(LayerRule):
    description = "max/average/stochastic pooling; Caffe's ceil rounding with the padding correction"
    family = "pool"
    tops = (1, 2)  # a MAX pooling may expose its argmax mask (SegNet/ENet)
    params = ("pooling_param",)

    def check_params(self, layer):
        param = layer.pooling_param
        yield from zero_fields(param, ("kernel_size", "kernel_h", "kernel_w", "stride",
                                       "stride_h", "stride_w", "bin_size"), _P)
        if len(layer.top) == 2 and param.pool != pb.PoolingParameter.MAX:
            yield Issue("a second (mask) top needs pool: MAX", _P + ("pool",))
        if param.global_pooling and (param.pad or param.pad_h or param.pad_w):
            yield Issue("global_pooling takes no padding", _P + ("pad",))

    def top_shapes(self, layer, bottoms):
        shape = bottoms[0]
        if len(shape) != 4:
            raise ShapeIssue(f"Pooling takes N x C x H x W blobs, got {fmt(shape)}")
        param = layer.pooling_param
        window = pool_window(param, shape[2:])
        if 0 in window.kernel + window.stride:
            return [None] * len(layer.top)
        for axis, name in enumerate(("height", "width")):
            if window.pad[axis] >= window.kernel[axis]:
                raise ShapeIssue(f"pad {window.pad[axis]} must be smaller than the kernel "
                                 f"{window.kernel[axis]} along {name}", _P + ("pad",))
        ceil = param.round_mode == pb.PoolingParameter.CEIL and param.ceil_mode
        out = tuple(pooled_size(size, k, s, p, ceil, name)
                    for size, k, s, p, name in zip(shape[2:], window.kernel, window.stride,
                                                   window.pad, ("height", "width")))
        top = shape[:2] + out
        return [top] * len(layer.top)

    def spatial_map(self, layer, ctx):
        param = layer.pooling_param
        field = ctx.bottoms[0].field
        if param.global_pooling or param.HasField("bin_size"):
            return [ctx.ended()] * len(layer.top)

        def through(maps):
            if len(maps) != 2:
                return None
            window = pool_window(param, (1, 1))
            return tuple(m.window(window.kernel[axis], window.stride[axis], window.pad[axis])
                         for axis, m in enumerate(maps))
        return [map_axes(field, through)] * len(layer.top)

    def flops(self, layer, bottoms, tops):
        """One per input value a window reads."""
        window = pool_window(layer.pooling_param, bottoms[0][2:])
        return sum(math.prod(top) for top in tops[:1]) * math.prod(window.kernel)

    def summary(self, layer):
        param = layer.pooling_param
        kind = pb.PoolingParameter.PoolMethod.Name(param.pool)
        if param.global_pooling:
            return f"{kind} global"
        if param.HasField("bin_size"):
            return f"{kind} {param.bin_size}x{param.bin_size} bins"
        try:
            return f"{kind} {window_text(pool_window(param, (1, 1)))}"
        except ShapeIssue:
            return kind

    def lower(self, layer, ctx):
        """Caffe's rounding (ceil, then the last window must start inside the input or its
        left padding) and AVE's divisor (the window clipped to the padded extent) are torch's
        ceil_mode=True and count_include_pad=True."""
        param = layer.pooling_param
        shape = ctx.bottom_shapes[0]
        window = pool_window(param, shape[2:])
        method = pb.PoolingParameter.PoolMethod.Name(param.pool)
        if param.global_pooling:
            if method == "MAX":
                return torch_nn("AdaptiveMaxPool2d", output_size=1)
            return torch_nn("AdaptiveAvgPool2d", output_size=1)
        ceil = param.round_mode == pb.PoolingParameter.CEIL and param.ceil_mode
        caffe_size = ctx.top_shapes[0][2:]
        if method == "STOCHASTIC":
            return runtime("StochasticPool", kernel=window.kernel, stride=window.stride,
                           out_size=tuple(caffe_size))
        torch_size = tuple(torch_pooled_size(n, k, s, p, ceil) for n, k, s, p in
                           zip(shape[2:], window.kernel, window.stride, window.pad))
        if method in ("MAX", "AVE") and len(layer.top) == 1 and (
                torch_size != tuple(caffe_size) or any(2 * p > k for p, k in zip(window.pad,
                                                                                  window.kernel))):
            return runtime("CaffePool", method=method, kernel=window.kernel, stride=window.stride,
                           pad=window.pad, in_size=tuple(shape[2:]), out_size=tuple(caffe_size))
        if any(2 * p > k for p, k in zip(window.pad, window.kernel)):
            raise LoweringIssue(f"pad {fmt(window.pad)} larger than half the kernel "
                                f"{fmt(window.kernel)} cannot run yet here", _P + ("pad",))
        common = dict(kernel_size=window.kernel, stride=window.stride, padding=window.pad,
                      ceil_mode=ceil)
        if method == "MAX":
            return torch_nn("MaxPool2d", return_indices=len(layer.top) == 2, **common)
        if method == "AVE":
            return torch_nn("AvgPool2d", count_include_pad=True, **common)
        raise LoweringIssue(f"{method} pooling cannot run", _P + ("pool",))


def torch_pooled_size(size: int, kernel: int, stride: int, pad: int, ceil: bool) -> int:
    """torch's rule, which drops a last window starting past the input even without padding."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def pooled_size(size: int, kernel: int, stride: int, pad: int, ceil: bool, name: str) -> int:
    """Caffe's pooled size: rounded division, then the last window must start inside.

    Like Caffe, a kernel a little larger than the input still yields one
    (clipped) window in CEIL mode; only an empty output is an error.
    """
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if pad > 0 and (out - 1) * stride >= size + pad:
        out -= 1  # the last window would start in the padding only
    if out < 1:
        raise ShapeIssue(f"kernel {kernel} is larger than the padded input along {name} "
                         f"({size} + 2*{pad} = {size + 2 * pad})", _P + ("kernel_size",))
    return out
