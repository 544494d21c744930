"""Elementwise layers that no torch function matches exactly: Power, Exp and Log with
Caffe's base/scale/shift, AbsVal, Threshold, Clip, Swish."""
from __future__ import annotations

import math

import torch
from torch import nn


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


class UnscaledDropout(nn.Module):
    """py-faster-rcnn's Dropout with scale_train: false: training zeroes a share p and leaves
    the rest as they are; inference scales everything by 1 - p instead."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.training:
            return x * (torch.rand_like(x) >= self.p).to(x.dtype)
        return x * (1.0 - self.p)
