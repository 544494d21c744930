"""Normalisation: Caffe's BatchNorm (statistics blobs scaled by a factor), Scale and Bias
along any axis, PSPNet's BN, within-channel LRN, MVN."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _per_channel(view: tuple) -> bool:
    """A Scale/Bias view that spans exactly the channel axis (1 x C x 1 ...)."""
    return len(view) >= 2 and view[0] == 1 and all(d == 1 for d in view[2:])


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
    def channel_affine(self):
        """(scale, shift) per channel that this layer computes in inference, or None while it
        normalises by batch statistics (the optimizer folds it into a convolution)."""
        if self.training or self.use_global_stats is False:
            return None
        factor = self.scale_factor[0]
        factor = torch.where(factor == 0, torch.zeros_like(factor), 1 / factor)
        scale = 1 / torch.sqrt(self.variance * factor + self.eps)
        return scale, -self.mean * factor * scale

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

    @torch.no_grad()
    def channel_affine(self):
        """(scale, shift) per channel when this is a learned channel-wise scale, else None."""
        if self.weight is None or not _per_channel(self.view):
            return None
        shift = self.bias if self.bias is not None else torch.zeros_like(self.weight)
        return self.weight.reshape(-1), shift.reshape(-1)

    def forward(self, x, factor=None):
        factor = self.weight if factor is None else factor
        y = x * factor.reshape(self.view) if factor is not None else x
        return y + self.bias.reshape(self.view) if self.bias is not None else y


class Bias(nn.Module):
    def __init__(self, axis: int, shape: tuple, ndim: int, learned: bool):
        super().__init__()
        self.view = (1,) * axis + tuple(shape) + (1,) * (ndim - axis - len(shape))
        self.bias = nn.Parameter(torch.zeros(shape)) if learned else None

    @torch.no_grad()
    def channel_affine(self):
        if self.bias is None or not _per_channel(self.view):
            return None
        return torch.ones_like(self.bias).reshape(-1), self.bias.reshape(-1)

    def forward(self, x, bias=None):
        return x + (self.bias if bias is None else bias).reshape(self.view)


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

    @torch.no_grad()
    def channel_affine(self):
        scale = self.scale.reshape(-1) / torch.sqrt(self.variance.reshape(-1) + self.eps)
        return scale, self.shift.reshape(-1) - self.mean.reshape(-1) * scale

    def forward(self, x):  # the 1 x C x 1 x 1 blobs, broadcast over any number of axes
        shape = (1, -1) + (1,) * (x.dim() - 2)
        scale, shift = self.scale.view(shape), self.shift.view(shape)
        mean, variance = self.mean.view(shape), self.variance.view(shape)
        return scale * (x - mean) / torch.sqrt(variance + self.eps) + shift


class ChannelAffine(nn.Module):
    """x * scale + shift per channel (axis 1): what the optimizer leaves of a BatchNorm, Scale,
    Bias or BN chain that no convolution before it can absorb. With `relu`, the ReLU after it
    too (a pre-activation block's BN, Scale, ReLU), clipped in place: one op, not two."""

    def __init__(self, channels: int, relu: bool = False):
        super().__init__()
        self.register_buffer("scale", torch.ones(channels))
        self.register_buffer("shift", torch.zeros(channels))
        self.relu = relu

    def channel_affine(self):
        return None if self.relu else (self.scale, self.shift)

    def forward(self, x):
        view = (1, -1) + (1,) * (x.dim() - 2)
        y = torch.addcmul(self.shift.view(view), x, self.scale.view(view))
        return y.clamp_min_(0) if self.relu else y  # addcmul's gradient does not need y


class Normalize(nn.Module):
    """SSD's (and ParseNet's) Normalize: x / sqrt(sum of squares + eps), the sum over each
    item (across_spatial) or over channels at each position, then times a learned scale (one,
    or one per channel)."""

    def __init__(self, channels: int, across_spatial: bool, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.across_spatial, self.eps = across_spatial, eps

    def forward(self, x):
        squares = x * x
        if self.across_spatial:
            total = squares.reshape(x.shape[0], -1).sum(1).reshape(-1, *(1,) * (x.dim() - 1))
        else:
            total = squares.sum(1, keepdim=True)
        scale = self.weight.reshape(1, -1, *(1,) * (x.dim() - 2))
        return x / torch.sqrt(total + self.eps) * scale
