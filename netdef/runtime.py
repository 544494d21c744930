"""Torch modules for the Caffe layers whose semantics no stock module has.

Compiled models import this module and torch only. Each class keeps Caffe's
blob layout for its tensors, so weights copy in without transposes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def per_item(x):
    """N x (everything else), as Caffe's count(1) views a blob: a 1-axis blob is N x 1."""
    return x.reshape(x.shape[0], -1)


class InnerProduct(nn.Module):
    """Flattens from `axis`, then y = x W^T + b (W is N x K, or K x N when `transpose`)."""

    def __init__(self, axis: int, inputs: int, outputs: int, bias: bool, transpose: bool = False):
        super().__init__()
        self.axis, self.transpose = axis, transpose
        shape = (inputs, outputs) if transpose else (outputs, inputs)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.zeros(outputs)) if bias else None

    def forward(self, x):
        x = x.flatten(self.axis)
        weight = self.weight.t() if self.transpose else self.weight
        return F.linear(x, weight, self.bias)


class CaffeBatchNorm(nn.Module):
    """Caffe's BatchNorm: blobs are mean and variance, both multiplied by a scale factor s
    (the running sum of weights); the statistics are mean / s and variance / s (s = 0: zeros).
    With batch statistics (training, or use_global_stats: false) the blobs are updated as
    Caffe does: s <- f s + 1, mean <- f mean + batch mean, variance <- f variance +
    m / (m - 1) batch variance, with f the moving_average_fraction and m values per channel."""

    def __init__(self, channels: int, eps: float, use_global_stats: bool | None, momentum: float):
        super().__init__()
        self.eps, self.use_global_stats, self.momentum = eps, use_global_stats, momentum
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("variance", torch.zeros(channels))
        self.register_buffer("scale_factor", torch.zeros(1))  # Caffe starts every blob at 0

    def forward(self, x):
        global_stats = (not self.training) if self.use_global_stats is None else self.use_global_stats
        if global_stats:
            factor = self.scale_factor[0]
            factor = torch.where(factor == 0, torch.zeros_like(factor), 1 / factor)
            mean, var = self.mean * factor, self.variance * factor
        else:
            dims = [0] + list(range(2, x.dim()))
            mean, var = x.mean(dims), x.var(dims, unbiased=False)
            self._accumulate(mean.detach(), var.detach(), x.numel() // x.shape[1])
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)

    @torch.no_grad()
    def _accumulate(self, mean, var, count: int) -> None:
        correction = count / (count - 1) if count > 1 else 1.0
        self.scale_factor.mul_(self.momentum).add_(1)
        self.mean.mul_(self.momentum).add_(mean)
        self.variance.mul_(self.momentum).add_(var * correction)


class Scale(nn.Module):
    """x * gamma (+ beta), gamma spanning axes [axis, axis + len(shape)) of x; with a second
    input, that input is gamma."""

    def __init__(self, axis: int, shape: tuple, ndim: int, learned: bool, bias: bool):
        super().__init__()
        self.view = (1,) * axis + tuple(shape) + (1,) * (ndim - axis - len(shape))
        self.weight = nn.Parameter(torch.ones(shape)) if learned else None
        self.bias = nn.Parameter(torch.zeros(shape)) if bias else None

    def forward(self, x, factor=None):
        factor = self.weight if factor is None else factor
        y = x * factor.reshape(self.view) if factor is not None else x
        return y + self.bias.reshape(self.view) if self.bias is not None else y


class Bias(nn.Module):
    def __init__(self, axis: int, shape: tuple, ndim: int, learned: bool):
        super().__init__()
        self.view = (1,) * axis + tuple(shape) + (1,) * (ndim - axis - len(shape))
        self.bias = nn.Parameter(torch.zeros(shape)) if learned else None

    def forward(self, x, bias=None):
        return x + (self.bias if bias is None else bias).reshape(self.view)


class Eltwise(nn.Module):
    def __init__(self, operation: str, coeffs: tuple = ()):
        super().__init__()
        self.operation, self.coeffs = operation, tuple(coeffs)

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


class Power(nn.Module):
    """(shift + scale * x) ** power."""

    def __init__(self, power: float, scale: float, shift: float):
        super().__init__()
        self.power, self.scale, self.shift = power, scale, shift

    def forward(self, x):
        y = self.shift + self.scale * x
        return y if self.power == 1 else y ** self.power


class Exp(nn.Module):
    """base ** (shift + scale * x); base -1 means e."""

    def __init__(self, base: float, scale: float, shift: float):
        super().__init__()
        self.log_base = 1.0 if base == -1 else math.log(base)
        self.scale, self.shift = scale, shift

    def forward(self, x):
        return torch.exp(self.log_base * (self.shift + self.scale * x))


class Log(nn.Module):
    """log_base(shift + scale * x); base -1 means e."""

    def __init__(self, base: float, scale: float, shift: float):
        super().__init__()
        self.inverse_log_base = 1.0 if base == -1 else 1 / math.log(base)
        self.scale, self.shift = scale, shift

    def forward(self, x):
        return torch.log(self.shift + self.scale * x) * self.inverse_log_base


class AbsVal(nn.Module):
    def forward(self, x):
        return x.abs()


class Threshold(nn.Module):
    def __init__(self, threshold: float):
        super().__init__()
        self.threshold = threshold

    def forward(self, x):
        return (x > self.threshold).to(x.dtype)


class Clip(nn.Module):
    def __init__(self, low: float, high: float):
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x):
        return x.clamp(self.low, self.high)


class Swish(nn.Module):
    def __init__(self, beta: float):
        super().__init__()
        self.beta = beta

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x)


class WithinChannelLRN(nn.Module):
    """x / (1 + alpha * avg_{size x size}(x^2)) ** beta, the window padded with zeros
    that count in the average (Caffe builds it from AVE pooling)."""

    def __init__(self, size: int, alpha: float, beta: float):
        super().__init__()
        self.size, self.alpha, self.beta = size, alpha, beta

    def forward(self, x):
        pad = (self.size - 1) // 2
        mean = F.avg_pool2d(x * x, self.size, 1, pad, ceil_mode=True, count_include_pad=True)
        return x * (1 + self.alpha * mean) ** -self.beta


class MVN(nn.Module):
    def __init__(self, normalize_variance: bool, across_channels: bool, eps: float):
        super().__init__()
        self.normalize_variance, self.eps = normalize_variance, eps
        self.start = 1 if across_channels else 2

    def forward(self, x):
        dims = tuple(range(self.start, x.dim()))
        x = x - x.mean(dims, keepdim=True)
        if self.normalize_variance:
            x = x / (x.pow(2).mean(dims, keepdim=True).sqrt() + self.eps)
        return x


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


# ------------------------------------------------------------------ losses
FLT_MIN = 1.1754943508222875e-38


def normalizer(mode: str, outer: int, inner: int, valid) -> torch.Tensor | float:
    """Caffe's LossLayer::GetNormalizer, never below 1."""
    if mode == "FULL":
        return float(max(outer * inner, 1))
    if mode == "VALID":
        return valid.clamp_min(1) if torch.is_tensor(valid) else float(max(valid, 1))
    if mode == "BATCH_SIZE":
        return float(max(outer, 1))
    return 1.0


class SoftmaxWithLoss(nn.Module):
    """-log softmax(x)[label] summed over positions whose label is not `ignore_label`,
    divided by the normalizer; optionally also returns the softmax."""

    def __init__(self, axis: int, ignore_label: int | None, normalization: str, with_prob: bool):
        super().__init__()
        self.axis, self.ignore_label = axis, ignore_label
        self.normalization, self.with_prob = normalization, with_prob

    def forward(self, x, label):
        log_prob = torch.log_softmax(x, self.axis).movedim(self.axis, -1)
        outer = math.prod(x.shape[:self.axis])
        inner = math.prod(x.shape[self.axis + 1:])
        label = label.reshape(log_prob.shape[:-1]).long()
        valid = label != self.ignore_label if self.ignore_label is not None \
            else torch.ones_like(label, dtype=torch.bool)
        picked = log_prob.gather(-1, torch.where(valid, label, 0).unsqueeze(-1)).squeeze(-1)
        # Caffe clamps the probability at FLT_MIN before the log
        picked = picked.clamp_min(math.log(FLT_MIN))
        loss = -(picked * valid).sum() / normalizer(self.normalization, outer, inner, valid.sum())
        return (loss, torch.softmax(x, self.axis)) if self.with_prob else loss


class SigmoidCrossEntropyLoss(nn.Module):
    def __init__(self, ignore_label: int | None, normalization: str):
        super().__init__()
        self.ignore_label, self.normalization = ignore_label, normalization

    def forward(self, x, target):
        target = target.reshape(x.shape)
        valid = target != self.ignore_label if self.ignore_label is not None \
            else torch.ones_like(target, dtype=torch.bool)
        losses = F.binary_cross_entropy_with_logits(x, torch.where(valid, target, 0),
                                                    reduction="none")
        outer = x.shape[0]
        return (losses * valid).sum() / normalizer(self.normalization, outer, x.numel() // outer,
                                                   valid.sum())


class EuclideanLoss(nn.Module):
    def forward(self, a, b):
        return (a - b.reshape(a.shape)).pow(2).sum() / (2 * a.shape[0])


class HingeLoss(nn.Module):
    """sum over items and classes of max(0, 1 - t * x), t = +1 for the label, -1 otherwise
    (squared for L2), divided by the batch size."""

    def __init__(self, squared: bool):
        super().__init__()
        self.squared = squared

    def forward(self, x, label):
        x = per_item(x)
        sign = -torch.ones_like(x)
        sign.scatter_(1, label.reshape(-1, 1).long(), 1.0)
        margins = (1 - sign * x).clamp_min(0)
        return (margins.pow(2) if self.squared else margins).sum() / x.shape[0]


class MultinomialLogisticLoss(nn.Module):
    """-log(max(p[label], 1e-20)) averaged over items; bottom 0 holds probabilities."""

    def forward(self, prob, label):
        prob = per_item(prob)
        picked = prob.gather(1, label.reshape(-1, 1).long()).squeeze(1)
        return -torch.log(picked.clamp_min(1e-20)).sum() / prob.shape[0]


class InfogainLoss(nn.Module):
    """-sum_k H[label, k] log softmax(x)_k over positions, / normalizer (H from bottom 2, or
    the `matrix` read from infogain_loss_param.source)."""

    def __init__(self, axis: int, ignore_label: int | None, normalization: str, matrix=None):
        super().__init__()
        self.axis, self.ignore_label, self.normalization = axis, ignore_label, normalization
        self.register_buffer("matrix", torch.tensor(matrix) if matrix is not None else None,
                             persistent=False)

    def forward(self, x, label, infogain=None):
        infogain = self.matrix.to(x.dtype) if infogain is None else infogain
        log_prob = torch.log_softmax(x, self.axis).movedim(self.axis, -1).clamp_min(math.log(FLT_MIN))
        label = label.reshape(log_prob.shape[:-1]).long()
        valid = label != self.ignore_label if self.ignore_label is not None \
            else torch.ones_like(label, dtype=torch.bool)
        rows = infogain.reshape(infogain.shape[-2], infogain.shape[-1])[torch.where(valid, label, 0)]
        losses = -(rows * log_prob).sum(-1) * valid
        outer = math.prod(x.shape[:self.axis])
        return losses.sum() / normalizer(self.normalization, outer,
                                         math.prod(x.shape[self.axis + 1:]), valid.sum())


class ContrastiveLoss(nn.Module):
    """Pairs: similar (y = 1) cost d^2, dissimilar max(margin - d, 0)^2 (legacy: max(margin - d^2,
    0)); summed and divided by 2N."""

    def __init__(self, margin: float, legacy: bool):
        super().__init__()
        self.margin, self.legacy = margin, legacy

    def forward(self, a, b, similar):
        squared = per_item(a - b).pow(2).sum(1)
        similar = similar.reshape(-1).to(a.dtype)
        if self.legacy:
            apart = (self.margin - squared).clamp_min(0)
        else:
            apart = (self.margin - squared.sqrt()).clamp_min(0).pow(2)
        return (similar * squared + (1 - similar) * apart).sum() / (2 * a.shape[0])


class Accuracy(nn.Module):
    """Share of positions whose label is among the top_k scores (ignore_label skipped);
    optionally also the accuracy per class."""

    def __init__(self, axis: int, top_k: int, ignore_label: int | None, per_class: bool):
        super().__init__()
        self.axis, self.top_k = axis, top_k
        self.ignore_label, self.per_class = ignore_label, per_class

    def forward(self, x, label):
        scores = x.movedim(self.axis, -1)
        label = label.reshape(scores.shape[:-1]).long()
        valid = label != self.ignore_label if self.ignore_label is not None \
            else torch.ones_like(label, dtype=torch.bool)
        safe = torch.where(valid, label, 0)
        # Caffe counts a hit when fewer than top_k scores beat the label's score
        label_score = scores.gather(-1, safe.unsqueeze(-1))
        hit = ((scores > label_score).sum(-1) < self.top_k) & valid
        accuracy = hit.sum() / valid.sum().clamp_min(1)
        if not self.per_class:
            return accuracy
        classes = scores.shape[-1]
        totals = torch.zeros(classes, device=x.device).index_add_(0, safe[valid], torch.ones_like(
            safe[valid], dtype=torch.float))
        hits = torch.zeros(classes, device=x.device).index_add_(0, safe[hit], torch.ones_like(
            safe[hit], dtype=torch.float))
        return accuracy, torch.where(totals > 0, hits / totals.clamp_min(1), torch.zeros_like(hits))


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


# ------------------------------------------------------------------ more layers
class BN(nn.Module):
    """PSPNet/SegNet's BN: scale * (x - mean) / sqrt(var + eps) + shift with stored statistics
    (blobs: scale, shift, mean, variance, each 1 x C x 1 x 1)."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.shift = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("variance", torch.ones(1, channels, 1, 1))

    def forward(self, x):  # the 1 x C x 1 x 1 blobs, broadcast over any number of axes
        shape = (1, -1) + (1,) * (x.dim() - 2)
        scale, shift = self.scale.view(shape), self.shift.view(shape)
        mean, variance = self.mean.view(shape), self.variance.view(shape)
        return scale * (x - mean) / torch.sqrt(variance + self.eps) + shift


class Unpool(nn.Module):
    """SegNet's Upsample: each value back to the position its MAX pooling mask recorded."""

    def __init__(self, scale: tuple, size: tuple):
        super().__init__()
        self.scale, self.size = tuple(scale), tuple(size)

    def forward(self, x, mask):
        return F.max_unpool2d(x, mask.long(), self.scale, self.scale, output_size=self.size)


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


class Embed(nn.Module):
    """Rows of W (input_dim x num_output, Caffe's layout) picked by integer-valued inputs."""

    def __init__(self, input_dim: int, num_output: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(input_dim, num_output))
        self.bias = nn.Parameter(torch.zeros(num_output)) if bias else None

    def forward(self, x):
        y = F.embedding(x.long(), self.weight)
        return y + self.bias if self.bias is not None else y


class Im2col(nn.Module):
    """Convolution windows unfolded into channels: C x kh x kw values per output position."""

    def __init__(self, kernel: tuple, stride: tuple, pad: tuple, dilation: tuple, out_size: tuple):
        super().__init__()
        self.kernel, self.stride, self.pad = tuple(kernel), tuple(stride), tuple(pad)
        self.dilation, self.out_size = tuple(dilation), tuple(out_size)

    def forward(self, x):
        columns = F.unfold(x, self.kernel, self.dilation, self.pad, self.stride)
        return columns.reshape(x.shape[0], -1, *self.out_size)


class Parameter(nn.Module):
    """A learned blob as the layer's output (Caffe's Parameter layer)."""

    def __init__(self, shape: tuple):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(shape))

    def forward(self):
        return self.weight


class BatchReindex(nn.Module):
    def forward(self, x, index):
        return x[index.long()]


class Filter(nn.Module):
    """Keeps the items whose selector is non-zero (the count is known only at run time)."""

    def forward(self, *xs):
        *data, selector = xs
        keep = selector.reshape(-1) != 0
        return data[0][keep] if len(data) == 1 else tuple(d[keep] for d in data)


# ------------------------------------------------------------------ regions
def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C's round(): halves go away from zero (torch.round sends them to even)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


class ROIPooling(nn.Module):
    """fast-rcnn's region max pooling. Each region (batch index, x1, y1, x2, y2 in input
    pixels) is scaled and rounded to feature cells, split into pooled_h x pooled_w bins with
    floor/ceil edges, and each bin max-pooled; a bin left empty by clipping gives 0."""

    def __init__(self, pooled_h: int, pooled_w: int, spatial_scale: float):
        super().__init__()
        self.pooled = (pooled_h, pooled_w)
        self.spatial_scale = spatial_scale

    def forward(self, features, rois):
        rois = rois.reshape(rois.shape[0], 5)
        out = features.new_zeros(rois.shape[0], features.shape[1], *self.pooled)
        # float32 like Caffe, so bin edges round the same way
        scaled = _round_half_away(rois[:, 1:].float() * torch.tensor(self.spatial_scale))
        starts, ends = scaled[:, :2], scaled[:, 2:]
        sizes = (ends - starts + 1).clamp_min(1)
        edges = [self._bin_edges(starts[:, axis], sizes[:, axis], self.pooled[1 - axis],
                                 features.shape[3 - axis]) for axis in (1, 0)]  # rows, columns
        for index, batch in enumerate(rois[:, 0].long().tolist()):
            rows = [edge[index] for edge in edges[0]]
            columns = [edge[index] for edge in edges[1]]
            out[index] = self._pool(features[batch], rows, columns)
        return out

    @staticmethod
    def _bin_edges(start, size, bins: int, limit: int):
        """(first, end) cell of every bin for every region, clipped to the map."""
        step = (size / bins).unsqueeze(1)
        index = torch.arange(bins, dtype=torch.float32)
        first = torch.floor(index * step) + start.unsqueeze(1)
        end = torch.ceil((index + 1) * step) + start.unsqueeze(1)
        return first.clamp(0, limit).long(), end.clamp(0, limit).long()

    @staticmethod
    def _pool(features, rows, columns):
        """Max of each (row bin, column bin) cell of one region; empty bins give 0."""
        (row_first, row_end), (col_first, col_end) = rows, columns
        top, bottom = int(row_first.min()), int(row_end.max())
        left, right = int(col_first.min()), int(col_end.max())
        if bottom <= top or right <= left:
            return features.new_zeros(features.shape[0], len(row_first), len(col_first))
        region = features[:, top:bottom, left:right]
        row_at = torch.arange(top, bottom, device=features.device)
        col_at = torch.arange(left, right, device=features.device)
        in_col = (col_at >= col_first.to(features.device)[:, None]) & (col_at < col_end.to(
            features.device)[:, None])  # bins x columns
        in_row = (row_at >= row_first.to(features.device)[:, None]) & (row_at < row_end.to(
            features.device)[:, None])
        lowest = torch.finfo(features.dtype).min
        by_column = region.unsqueeze(2).masked_fill(~in_col, lowest).amax(-1)  # C x rows x PW
        pooled = by_column.unsqueeze(1).masked_fill(~in_row[:, :, None], lowest).amax(2)
        empty = ~(in_row.any(1)[:, None] & in_col.any(1)[None, :])
        return pooled.masked_fill(empty, 0)


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


# ------------------------------------------------------------------ sequences
class _Recurrent(nn.Module):
    """Caffe's unrolled RNN/LSTM: x is T x N x ..., cont is T x N (0 starts a sequence: the
    state is multiplied by cont_t before step t), an optional static input N x ... adds to
    every step. Without expose_hidden the state starts at zero on every call."""

    gates = 1
    state_count = 1

    def __init__(self, inputs: int, outputs: int, static_inputs: int, expose_hidden: bool):
        super().__init__()
        width = outputs * self.gates
        self.expose_hidden = expose_hidden
        self.input_weight = nn.Parameter(torch.empty(width, inputs))
        self.input_bias = nn.Parameter(torch.zeros(width))
        self.static_weight = nn.Parameter(torch.empty(width, static_inputs)) \
            if static_inputs else None
        self.hidden_weight = nn.Parameter(torch.empty(width, outputs))

    def forward(self, x, cont, *extra):
        static, states = (extra[0], extra[1:]) if len(extra) > self.expose_hidden * \
            self.state_count else (None, extra)
        steps, batch = x.shape[:2]
        projected = F.linear(x.flatten(2), self.input_weight, self.input_bias)
        if static is not None:
            projected = projected + F.linear(per_item(static), self.static_weight)
        width = self.hidden_weight.shape[1]
        if not states:
            states = tuple(x.new_zeros(1, batch, width) for _ in range(self.state_count))
        states = [state.reshape(batch, width) for state in states]
        outputs = []
        for t in range(steps):
            keep = cont[t].reshape(batch, 1).to(x.dtype)
            states, output = self.step(projected[t], keep, states)
            outputs.append(output)
        top = torch.stack(outputs)
        if self.expose_hidden:
            return (top, *(state.unsqueeze(0) for state in states))
        return top


class RNN(_Recurrent):
    """h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h [+ W_xh_static x_static]),
    o_t = tanh(W_ho h_t + b_o). Blobs: W_xh, b_h, [W_xh_static], W_hh, W_ho, b_o."""

    def __init__(self, inputs: int, outputs: int, static_inputs: int, expose_hidden: bool):
        super().__init__(inputs, outputs, static_inputs, expose_hidden)
        self.output_weight = nn.Parameter(torch.empty(outputs, outputs))
        self.output_bias = nn.Parameter(torch.zeros(outputs))

    def step(self, projected, keep, states):
        hidden = torch.tanh(F.linear(keep * states[0], self.hidden_weight) + projected)
        return [hidden], torch.tanh(F.linear(hidden, self.output_weight, self.output_bias))


def lstm_unit(cell, gates, keep):
    """Caffe's LSTMUnit: gates are (i, f, o, g) blocks; c = keep * f * c_prev + i * g,
    h = o * tanh(c)."""
    i, f, o, g = gates.chunk(4, -1)
    cell = keep * torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
    return cell, torch.sigmoid(o) * torch.tanh(cell)


class LSTM(_Recurrent):
    """Gates W_hc (cont_t h_{t-1}) + W_xc x_t + b_c [+ W_xc_static x_static] feed Caffe's
    LSTMUnit. Blobs: W_xc, b_c, [W_xc_static], W_hc. Exposed states are (h, c) in and out."""

    gates = 4
    state_count = 2

    def step(self, projected, keep, states):
        hidden, cell = states
        gates = F.linear(keep * hidden, self.hidden_weight) + projected
        cell, hidden = lstm_unit(cell, gates, keep)
        return [hidden, cell], hidden


class LSTMUnit(nn.Module):
    """One LSTM step on 1 x N x H cells, 1 x N x 4H gates and a 1 x N continuation."""

    def forward(self, cell, gates, cont):
        keep = cont.reshape(*cont.shape, 1).to(gates.dtype)
        return lstm_unit(cell, gates, keep)
