"""Layers that move, merge or cut blobs: Eltwise, Concat, Split, Slice, Crop, Flatten,
Reshape, Interp, ArgMax, Reduction, Tile, BatchReindex, Filter; and the forks' Permute,
ShuffleChannel, Reorg, Axpy and PADDING."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Eltwise(nn.Module):
    def __init__(self, operation: str, coeffs: tuple = ()):
        super().__init__()
        self.operation, self.coeffs = operation, tuple(coeffs)

    def plain_sum(self) -> bool:
        """Whether this adds its inputs with no coefficient other than 1 (optimize=True then
        lets the convolution before it do the sum)."""
        return self.operation == "SUM" and all(coeff == 1 for coeff in self.coeffs)

    def forward(self, *xs):
        if self.operation == "PROD":
            return math.prod(xs[1:], start=xs[0])
        if self.operation == "MAX":
            out = xs[0]
            for x in xs[1:]:
                out = torch.maximum(out, x)
            return out
        if self.coeffs:
            out = xs[0] * self.coeffs[0]
            for coeff, x in zip(self.coeffs[1:], xs[1:]):
                out = out + coeff * x
            return out
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Concat(nn.Module):
    def __init__(self, axis: int):
        super().__init__()
        self.axis = axis

    def forward(self, *xs):
        return torch.cat(xs, self.axis)


class Split(nn.Module):
    def __init__(self, count: int):
        super().__init__()
        self.count = count

    def forward(self, x):  # one top: the tensor itself, as every one-top module returns
        return x if self.count == 1 else (x,) * self.count


class Slice(nn.Module):
    def __init__(self, axis: int, sizes: tuple):
        super().__init__()
        self.axis, self.sizes = axis, list(sizes)

    def forward(self, x):
        parts = torch.split(x, self.sizes, self.axis)
        return parts[0] if len(parts) == 1 else tuple(parts)


class Crop(nn.Module):
    """Bottom 0 cut to bottom 1's size on axes >= axis, starting at the offsets."""

    def __init__(self, axis: int, offsets: tuple):
        super().__init__()
        self.axis, self.offsets = axis, tuple(offsets)

    def forward(self, x, reference):
        for i, offset in enumerate(self.offsets):
            dim = self.axis + i
            x = x.narrow(dim, offset, reference.shape[dim])
        return x


class Flatten(nn.Module):
    def __init__(self, start: int, end: int):
        super().__init__()
        self.start, self.end = start, end

    def forward(self, x):
        return x.flatten(self.start, self.end)


class Reshape(nn.Module):
    """Caffe's Reshape on axes [start, end): 0 copies a dim, -1 infers one."""

    def __init__(self, start: int, end: int | None, dims: tuple):
        super().__init__()
        self.start, self.end, self.dims = start, end, tuple(dims)

    def forward(self, x):
        end = x.dim() if self.end is None else self.end
        middle = [x.shape[self.start + i] if d == 0 else d for i, d in enumerate(self.dims)]
        return x.reshape(list(x.shape[:self.start]) + middle + list(x.shape[end:]))


class Interp(nn.Module):
    """DeepLab's Interp: crop/pad by pad_beg/pad_end (<= 0), then bilinear with aligned corners."""

    def __init__(self, size: tuple | None, pad_begin: int, pad_end: int):
        super().__init__()
        self.size, self.pad_begin, self.pad_end = size, pad_begin, pad_end

    def forward(self, x, reference=None):
        height, width = x.shape[2:]
        x = x[..., -self.pad_begin:height + self.pad_end, -self.pad_begin:width + self.pad_end]
        size = tuple(reference.shape[2:]) if reference is not None else self.size
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class ArgMax(nn.Module):
    """Indices (or values, or both per item) of the top_k entries along `axis`, or over all
    entries of each item when no axis is given; indices as floats, as Caffe stores them."""

    def __init__(self, axis: int | None, top_k: int, out_max_val: bool):
        super().__init__()
        self.axis, self.top_k, self.out_max_val = axis, top_k, out_max_val

    def forward(self, x):
        if self.axis is not None:
            values, indices = x.topk(self.top_k, self.axis)
            return values if self.out_max_val else indices.to(x.dtype)
        values, indices = x.reshape(x.shape[0], -1).topk(self.top_k, 1)
        parts = [indices.to(x.dtype)] + ([values] if self.out_max_val else [])
        return torch.stack(parts, 1)


class Reduction(nn.Module):
    def __init__(self, operation: str, axis: int, coeff: float):
        super().__init__()
        self.operation, self.axis, self.coeff = operation, axis, coeff

    def forward(self, x):
        x = x.flatten(self.axis) if self.axis < x.dim() else x.unsqueeze(-1)
        if self.operation == "ASUM":
            x = x.abs()
        elif self.operation == "SUMSQ":
            x = x * x
        reduced = x.mean(-1) if self.operation == "MEAN" else x.sum(-1)
        return reduced * self.coeff


class Tile(nn.Module):
    def __init__(self, axis: int, tiles: int):
        super().__init__()
        self.axis, self.tiles = axis, tiles

    def forward(self, x):
        repeats = [1] * x.dim()
        repeats[self.axis] = self.tiles
        return x.repeat(repeats)


class BatchReindex(nn.Module):
    def forward(self, x, index):
        return x[index.long()]


class Filter(nn.Module):
    """Keeps the items whose selector is non-zero (the count is known only at run time)."""

    def forward(self, *xs):
        *data, selector = xs
        keep = selector.reshape(-1) != 0
        return data[0][keep] if len(data) == 1 else tuple(d[keep] for d in data)


class Permute(nn.Module):
    """SSD's Permute: the axes in `order` (a full permutation)."""

    def __init__(self, order: tuple):
        super().__init__()
        self.order = tuple(order)

    def forward(self, x):
        return x.permute(*self.order).contiguous()


class ShuffleChannel(nn.Module):
    """ShuffleNet's channel shuffle: channels seen as group x (C / group), transposed."""

    def __init__(self, group: int):
        super().__init__()
        self.group = group

    def forward(self, x):
        n, c = x.shape[:2]
        grouped = x.reshape(n, self.group, c // self.group, *x.shape[2:])
        return grouped.transpose(1, 2).reshape(x.shape)


class Reorg(nn.Module):
    """The YOLOv2 ports' passthrough (darknet's reorg as caffe-yolov2 calls it). Darknet
    reads the C x H x W input as if it were (C / s^2) x sH x sW, gathers every s x s phase of
    that view into C channels of H x W, and the result is read as (C s^2) x (H / s) x (W / s):
    not a plain space-to-depth of the input, and that is what trained weights expect."""

    def __init__(self, stride: int, reverse: bool = False):
        super().__init__()
        self.stride, self.reverse = stride, reverse

    def forward(self, x):
        n, c, h, w = x.shape
        s = self.stride
        if self.reverse:  # darknet's inverse: scatter what the forward gathers
            phases = x.reshape(n, s, s, c // (s * s), h, w)  # [b, oy, ox, c2, j, i]
            return phases.permute(0, 3, 4, 1, 5, 2).reshape(n, c // (s * s), h * s, w * s)
        view = x.reshape(n, c // (s * s), h, s, w, s)  # [b, c2, j, oy, i, ox]
        gathered = view.permute(0, 3, 5, 1, 2, 4).reshape(n, c, h, w)
        return gathered.reshape(n, c * s * s, h // s, w // s)


class Axpy(nn.Module):
    """SENet's Axpy: a * x + y, a (N x C x 1 x 1) scaling x's channels."""

    def forward(self, a, x, y):
        return a.reshape(*a.shape[:2], *(1,) * (x.dim() - 2)) * x + y


class Padding(nn.Module):
    """DeepLab v1's PADDING: pad_beg zeros before and pad_end after each spatial axis
    (negative values crop)."""

    def __init__(self, pad_beg: int, pad_end: int):
        super().__init__()
        self.pads = (pad_beg, pad_end, pad_beg, pad_end)

    def forward(self, x):
        return F.pad(x, self.pads)


class ParseOutput(nn.Module):
    """ParseNet's label map: the first best class at each position (and its score)."""

    def __init__(self, with_score: bool):
        super().__init__()
        self.with_score = with_score

    def forward(self, x):
        score, label = x.max(1, keepdim=True)
        label = label.to(x.dtype)
        return (label, score) if self.with_score else label
