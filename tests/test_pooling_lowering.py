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


# ------------------------------------------------------------------ stochastic pooling
def _stochastic_net(shape, k, s, p=0):
    dims = " ".join(f"dim: {d}" for d in shape)
    return (f'input: "data" input_shape {{ {dims} }}\n'
            f'layer {{ name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param '
            f'{{ pool: STOCHASTIC kernel_size: {k} stride: {s} pad: {p} }} }}')


def _stochastic_windows(x, k, s, p):
    """Caffe's StoPoolForward* windows: sized with pad, placed at i * stride, clipped."""
    h, w = x.shape[2:]
    def size(n):
        out = math.ceil((n + 2 * p - k) / s) + 1
        return out - 1 if p and (out - 1) * s >= n + p else out
    for i in range(size(h)):
        for j in range(size(w)):
            yield i, j, x[:, :, i * s:min(i * s + k, h), j * s:min(j * s + k, w)]


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 0), (3, 2, 1)])
def test_stochastic_pooling_at_test_time_is_the_activation_weighted_mean(k, s, p):
    x = np.random.default_rng(k + p).uniform(0, 1, (2, 3, 7, 8)).astype(np.float32)
    x[0, 0, :3, :3] = 0  # an all-zero window gives 0
    windows = list(_stochastic_windows(x, k, s, p))
    expected = np.zeros(x.shape[:2] + (windows[-1][0] + 1, windows[-1][1] + 1), np.float32)
    for i, j, window in windows:
        expected[:, :, i, j] = (window ** 2).sum((2, 3)) / (1.1754944e-38 + window.sum((2, 3)))
    out = netdef.load(_stochastic_net(x.shape, k, s, p))(data=torch.from_numpy(x))["pool"]
    assert np.allclose(out.numpy(), expected, rtol=1e-6)


def test_stochastic_pooling_in_training_samples_in_proportion_to_activations():
    x = np.tile(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), (1, 4000, 1, 1))
    model = netdef.load(_stochastic_net(x.shape, 2, 2), phase="TRAIN")
    torch.manual_seed(0)
    picked = model(data=torch.from_numpy(x))["pool"].numpy().ravel()
    shares = [(picked == value).mean() for value in (1, 2, 3, 4)]
    assert np.allclose(shares, [0.1, 0.2, 0.3, 0.4], atol=0.025)
    torch.manual_seed(0)
    assert np.array_equal(model(data=torch.from_numpy(x))["pool"].numpy().ravel(), picked)


def test_stochastic_pooling_in_training_picks_a_value_of_each_window():
    x = np.random.default_rng(5).uniform(0.1, 1, (1, 2, 7, 7)).astype(np.float32)
    model = netdef.load(_stochastic_net(x.shape, 3, 2), phase="TRAIN")
    out = model(data=torch.from_numpy(x))["pool"].numpy()
    for i, j, window in _stochastic_windows(x, 3, 2, 0):
        for c in range(2):
            assert out[0, c, i, j] in window[0, c]
