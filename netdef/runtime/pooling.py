"""Pooling that torch's cannot express: Caffe's padding and divisor rules (CaffePool),
stochastic pooling, max unpooling (SegNet's Upsample), spatial pyramid pooling."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._caffe import FLT_MIN


class StochasticPool(nn.Module):
    """Caffe's stochastic pooling (its GPU kernels; the CPU path is unimplemented there).
    Windows start at i * stride with no padding offset and are clipped to the input.
    Training samples one activation per window with probability proportional to it;
    testing returns the activation-weighted mean sum(x^2) / (FLT_MIN + sum(x))."""

    def __init__(self, kernel, stride, out_size):
        super().__init__()
        self.kernel, self.stride, self.out_size = tuple(kernel), tuple(stride), tuple(out_size)

    def forward(self, x):
        n, c, height, width = x.shape
        spans = [(o - 1) * s + k for o, s, k in zip(self.out_size, self.stride, self.kernel)]
        padded = F.pad(x, (0, max(spans[1] - width, 0), 0, max(spans[0] - height, 0)))
        windows = F.unfold(padded.reshape(n * c, 1, *padded.shape[2:]), self.kernel,
                           stride=self.stride)  # (N*C) x k*k x positions
        totals = windows.sum(1, keepdim=True)
        if self.training:
            threshold = torch.rand_like(totals) * totals
            chosen = (windows.cumsum(1) >= threshold).to(torch.uint8).argmax(1, keepdim=True)
            pooled = windows.gather(1, chosen)
        else:
            pooled = (windows * windows).sum(1, keepdim=True) / (FLT_MIN + totals)
        return pooled.reshape(n, c, *self.out_size)


class CaffePool(nn.Module):
    """MAX or AVE pooling done the long way, for the settings torch's pooling cannot express:
    padding over half the kernel, or a last window that starts past the input (Caffe keeps it
    when there is no padding). Padding is explicit (-FLT_MAX for MAX, as Caffe's initial value;
    zeros for AVE) and AVE divides by Caffe's divisor: the window clipped to the padded extent.

    Where windows are sparse (a stride far beyond the kernel), padding the input out to the
    windows' span would allocate far more than the output needs; then each window's input
    cells are gathered instead, at most min(kernel, input) per window and axis."""

    def __init__(self, method: str, kernel: tuple, stride: tuple, pad: tuple, in_size: tuple,
                 out_size: tuple):
        super().__init__()
        self.method, self.kernel, self.stride = method, tuple(kernel), tuple(stride)
        self.out_size = tuple(out_size)
        spans = [(o - 1) * s + k for o, s, k in zip(out_size, stride, kernel)]
        self.padding = (pad[1], max(spans[1] - in_size[1] - pad[1], 0),
                        pad[0], max(spans[0] - in_size[0] - pad[0], 0))
        divisors = [torch.tensor([max(min(o * s - p + k, n + p) - (o * s - p), 1)
                                  for o in range(size)], dtype=torch.float32)
                    for size, s, p, k, n in zip(out_size, stride, pad, kernel, in_size)]
        self.register_buffer("divisor", torch.outer(*divisors), persistent=False)
        cells = [min(k, n) for k, n in zip(kernel, in_size)]
        padded = math.prod(n + p + extra for n, p, extra in
                           zip(in_size, pad, (self.padding[3], self.padding[1])))
        self.cells = tuple(cells) if math.prod(o * c for o, c in zip(out_size, cells)) < padded \
            else None
        if self.cells is not None:
            for axis, (o, s, p, k, n, c) in enumerate(zip(out_size, stride, pad, kernel, in_size,
                                                          cells)):
                index, valid = _window_cells(o, s, p, k, n, c)
                self.register_buffer(f"index{axis}", index, persistent=False)
                self.register_buffer(f"valid{axis}", valid, persistent=False)

    def forward(self, x):
        fill = -3.4028234663852886e38 if self.method == "MAX" else 0.0
        if self.cells is not None:
            x, kernel, stride = self._gathered(x, fill), self.cells, self.cells
        else:
            x, kernel, stride = F.pad(x, self.padding, value=fill), self.kernel, self.stride
        if self.method == "MAX":
            y = F.max_pool2d(x, kernel, stride)
        else:
            y = F.avg_pool2d(x, kernel, stride) * (kernel[0] * kernel[1])
            y = y[..., :self.out_size[0], :self.out_size[1]] / self.divisor.to(y.dtype)
        return y[..., :self.out_size[0], :self.out_size[1]]

    def _gathered(self, x, fill: float):
        """Each window's input cells side by side, padding cells set to `fill`."""
        for axis, index, valid in ((2, self.index0, self.valid0), (3, self.index1, self.valid1)):
            x = x.index_select(axis, index)
            shape = [1] * x.dim()
            shape[axis] = -1
            x = x.masked_fill(~valid.view(shape), fill)
        return x


def _window_cells(out: int, stride: int, pad: int, kernel: int, size: int, cells: int):
    """Per window, `cells` input indices from its first cell inside the input, and which of
    them fall inside both the window and the input."""
    starts = torch.arange(out) * stride - pad
    first, end = starts.clamp(min=0), (starts + kernel).clamp(max=size)
    index = first[:, None] + torch.arange(cells)[None, :]
    valid = index < end[:, None]
    return index.clamp(max=size - 1).reshape(-1), valid.reshape(-1)


class Unpool(nn.Module):
    """SegNet's Upsample: each value back to the position its MAX pooling mask recorded."""

    def __init__(self, scale: tuple, size: tuple):
        super().__init__()
        self.scale, self.size = tuple(scale), tuple(size)

    def forward(self, x, mask):
        return F.max_unpool2d(x, mask.long(), self.scale, self.scale, output_size=self.size)


class SPP(nn.Module):
    """Spatial pyramid pooling: level l pools into 2^l x 2^l bins (kernel ceil(H / 2^l),
    stride = kernel, padding half the remainder, as Caffe computes them), each level
    flattened, all concatenated; one level keeps its N x C x 1 x 1 shape."""

    def __init__(self, levels: list):
        super().__init__()
        self.levels = nn.ModuleList(CaffePool(**level) for level in levels)

    def forward(self, x):
        if len(self.levels) == 1:
            return self.levels[0](x)
        return torch.cat([level(x).flatten(1) for level in self.levels], 1)


class UnPooling(nn.Module):
    """ParseNet's UnPooling. Input cell (h, w) owns the window [h s - p, h s - p + k) of an
    output (H - 1) s - 2p + k high (likewise across). REP copies each value over its window,
    averaging where windows overlap; DIV does the same with each value first divided by
    the window's area; FIXED puts each value at its window's middle (later cells win). A
    second input (the size to reach) only decided the window when the net was lowered."""

    def __init__(self, method: str, kernel: tuple, stride: tuple, pad: tuple):
        super().__init__()
        self.method = method
        self.kernel, self.stride, self.pad = tuple(kernel), tuple(stride), tuple(pad)

    def forward(self, x, like=None):
        if self.method == "FIXED":
            return self._fixed(x)
        channels = x.shape[1]
        ones = x.new_ones(channels, 1, *self.kernel)
        spread = F.conv_transpose2d(x, ones, stride=self.stride, padding=self.pad,
                                    groups=channels)
        cover = F.conv_transpose2d(torch.ones_like(x[:1, :1]), ones[:1], stride=self.stride,
                                   padding=self.pad)
        out = spread / cover.clamp_min(1)
        return out / (self.kernel[0] * self.kernel[1]) if self.method == "DIV" else out

    def _fixed(self, x):
        size = [(n - 1) * s - 2 * p + k
                for n, s, p, k in zip(x.shape[-2:], self.stride, self.pad, self.kernel)]
        middles = []
        for axis in range(2):
            start = torch.arange(x.shape[2 + axis], device=x.device) * self.stride[axis] \
                - self.pad[axis]
            middle = torch.div(2 * start + self.kernel[axis] - 1, 2, rounding_mode="trunc")
            middles.append(middle.clamp(0, size[axis] - 1))
        target = (middles[0][:, None] * size[1] + middles[1][None, :]).reshape(-1)
        source = torch.arange(target.numel(), device=x.device)
        last = torch.full((size[0] * size[1],), -1, device=x.device, dtype=torch.long)
        last = last.scatter_reduce(0, target, source, reduce="amax")  # later cells win
        written = last >= 0
        flat = x.reshape(*x.shape[:2], -1)
        out = flat.new_zeros(*x.shape[:2], size[0] * size[1])
        out[..., written] = flat[..., last[written]]
        return out.reshape(*x.shape[:2], *size)
