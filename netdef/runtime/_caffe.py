"""Caffe's numeric conventions that several families share."""
from __future__ import annotations

FLT_MIN = 1.1754943508222875e-38  # the smallest normal float, Caffe's floor under logarithms


class BadBatch(ValueError):
    """Raised by a runtime module when the data it is given breaks the layer's contract (a box
    label outside the classes). Runtime modules stay free of netdef's error classes (model.py
    imports them alone); the trainer reports this as a DataError at the layer's line."""


def per_item(x):
    """N x (everything else), as Caffe's count(1) views a blob: a 1-axis blob is N x 1."""
    return x.reshape(x.shape[0], -1)
