"""Caffe's numeric conventions that several families share."""
from __future__ import annotations

FLT_MIN = 1.1754943508222875e-38  # the smallest normal float, Caffe's floor under logarithms


def per_item(x):
    """N x (everything else), as Caffe's count(1) views a blob: a 1-axis blob is N x 1."""
    return x.reshape(x.shape[0], -1)
