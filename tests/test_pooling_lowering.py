"""Pooling settings torch's own modules cannot express, against Caffe's definition in numpy."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import netdef


def caffe_pool(x, method, k, s, p):
    """Caffe's PoolingLayer forward on one axis pair, written out (ceil + padding correction)."""
    h, w = x.shape[2:]
    def size(n):
        out = math.ceil((n + 2 * p - k) / s) + 1
        return out - 1 if p and (out - 1) * s >= n + p else out
    out = np.zeros(x.shape[:2] + (size(h), size(w)), np.float32)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            h0, w0 = i * s - p, j * s - p
            h1, w1 = min(h0 + k, h + p), min(w0 + k, w + p)
            divisor = (h1 - h0) * (w1 - w0)
            window = x[:, :, max(h0, 0):min(h1, h), max(w0, 0):min(w1, w)]
            if method == "MAX":
                out[:, :, i, j] = window.max((2, 3)) if window.size else -3.4028235e38
            else:
                out[:, :, i, j] = window.sum((2, 3)) / divisor
    return out


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("k, s, p, side", [(3, 2, 2, 7),    # pad over half the kernel
                                            (1, 2, 0, 8),    # last window past the input
                                            (2, 3, 0, 7),
                                            (3, 2, 1, 6)])   # the ordinary case, stock torch
def test_pooling_matches_caffe(method, k, s, p, side):
    text = ('layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 '
            f'dim: {side} dim: {side} }} }} }}\n'
            'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { '
            f'pool: {method} kernel_size: {k} stride: {s} pad: {p} }} }}')
    x = np.random.default_rng(0).standard_normal((1, 2, side, side)).astype(np.float32)
    with torch.no_grad():
        ours = netdef.load(text)(data=torch.from_numpy(x))["p"].numpy()
    expected = caffe_pool(x, method, k, s, p)
    assert ours.shape == expected.shape == netdef.analyze(text).blob("p").shape
    if method == "AVE" and k < s and p == 0:
        # Caffe divides an empty window by zero; netdef returns 0 there
        expected = np.nan_to_num(expected)
    assert np.allclose(ours, expected, atol=1e-6)
