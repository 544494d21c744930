"""Normalisation: Caffe's BatchNorm (statistics blobs scaled by a factor), Scale and Bias
along any axis, PSPNet's BN, within-channel LRN, MVN."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn



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

    def forward(self, x):  # the 1 x C x 1 x 1 blobs, broadcast over any number of axes
        shape = (1, -1) + (1,) * (x.dim() - 2)
        scale, shift = self.scale.view(shape), self.shift.view(shape)
        mean, variance = self.mean.view(shape), self.variance.view(shape)
        return scale * (x - mean) / torch.sqrt(variance + self.eps) + shift
