"""The mobile, YOLOv2, SENet, ParseNet and DeepLab v1 fork layers against loop-for-loop numpy
transcriptions of the forks' C++ (darknet's reorg, ParseNet's UnPooling and ParseOutput,
DeepLab's PADDING, SENet's Axpy, SSD's Normalize, ShuffleNet's channel shuffle)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import netdef
from netdef.runtime.normalization import Normalize
from netdef.runtime.pooling import UnPooling
from netdef.runtime.shape import Axpy, Padding, ParseOutput, Reorg, ShuffleChannel

RNG = np.random.default_rng(7)


def reorg_loop(x, stride, forward):
    """darknet's reorg_cpu as caffe-yolov2 calls it: w, h, c are the input's, and `forward`
    is the layer's `reverse`."""
    batch, c, h, w = x.shape
    flat, out = x.reshape(-1), np.zeros(x.size, x.dtype)
    out_c = c // (stride * stride)
    for b in range(batch):
        for k in range(c):
            for j in range(h):
                for i in range(w):
                    in_index = i + w * (j + h * (k + c * b))
                    c2, offset = k % out_c, k // out_c
                    w2, h2 = i * stride + offset % stride, j * stride + offset // stride
                    out_index = w2 + w * stride * (h2 + h * stride * (c2 + out_c * b))
                    if forward:
                        out[out_index] = flat[in_index]
                    else:
                        out[in_index] = flat[out_index]
    return out


@pytest.mark.parametrize("reverse", [False, True])
def test_reorg_is_darknets(reverse):
    x = RNG.standard_normal((2, 8, 6, 4)).astype(np.float32)
    ours = Reorg(2, reverse)(torch.from_numpy(x)).numpy()
    assert ours.shape == ((2, 2, 12, 8) if reverse else (2, 32, 3, 2))
    np.testing.assert_array_equal(ours.reshape(-1), reorg_loop(x, 2, forward=reverse))


def unpool_loop(x, method, k, s, p):
    """ParseNet's UnPoolingLayer::Forward_cpu (square windows), with its FillMask."""
    n, c, h, w = x.shape
    size = ((h - 1) * s - 2 * p + k, (w - 1) * s - 2 * p + k)
    mask = np.zeros(size, int)
    windows = {}
    for i in range(h):
        for j in range(w):
            hs, ws = i * s - p, j * s - p
            he, we = min(hs + k, size[0] + p), min(ws + k, size[1] + p)
            area = (he - hs) * (we - ws)
            rows = range(max(hs, 0), min(he, size[0]))
            cols = range(max(ws, 0), min(we, size[1]))
            windows[i, j] = (hs, ws, area, rows, cols)
            for r in rows:
                for q in cols:
                    mask[r, q] += 1
    out = np.zeros((n, c) + size, np.float64)
    for (i, j), (hs, ws, area, rows, cols) in windows.items():
        if method == "FIXED":
            mid_h = min(max(int((2 * hs + k - 1) / 2), 0), size[0] - 1)
            mid_w = min(max(int((2 * ws + k - 1) / 2), 0), size[1] - 1)
            out[:, :, mid_h, mid_w] = x[:, :, i, j]
            continue
        value = x[:, :, i, j] / (area if method == "DIV" else 1)
        for r in rows:
            for q in cols:
                out[:, :, r, q] += value / mask[r, q]
    return out


@pytest.mark.parametrize("method", ["REP", "DIV", "FIXED"])
@pytest.mark.parametrize("k,s,p", [(3, 2, 1), (2, 2, 0), (4, 3, 1)])
def test_unpooling_is_parsenets(method, k, s, p):
    x = RNG.standard_normal((2, 3, 4, 5))
    ours = UnPooling(method, (k, k), (s, s), (p, p))(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, unpool_loop(x, method, k, s, p), rtol=1e-12)


def test_unpooling_to_a_second_bottoms_size():
    """ParseNet's global context: a 1 x 1 map copied over the size of bottom 1."""
    text = """input: "g" input_shape { dim: 1 dim: 2 dim: 1 dim: 1 }
    input: "f" input_shape { dim: 1 dim: 2 dim: 5 dim: 7 }
    layer { name: "up" type: "UnPooling" bottom: "g" bottom: "f" top: "u"
            unpooling_param { unpool: REP } }"""
    g = torch.randn(1, 2, 1, 1)
    out = netdef.load(text)(g=g, f=torch.zeros(1, 2, 5, 7))["u"]
    assert torch.equal(out, g.expand(1, 2, 5, 7))


def test_parse_output_takes_the_first_best_class():
    x = torch.tensor([[[[1.0, 2.0]], [[3.0, 2.0]], [[3.0, 0.0]]]])
    label, score = ParseOutput(True)(x)
    assert label.tolist() == [[[[1.0, 0.0]]]] and score.tolist() == [[[[3.0, 2.0]]]]


@pytest.mark.parametrize("begin,end", [(2, 1), (-1, -2), (0, 0)])
def test_padding_is_deeplabs(begin, end):
    x = RNG.standard_normal((1, 2, 5, 6)).astype(np.float32)
    ours = Padding(begin, end)(torch.from_numpy(x)).numpy()
    expected = np.zeros((1, 2, 5 + begin + end, 6 + begin + end), np.float32)
    for h in range(expected.shape[2]):
        for w in range(expected.shape[3]):
            if 0 <= h - begin < 5 and 0 <= w - begin < 6:
                expected[:, :, h, w] = x[:, :, h - begin, w - begin]
    np.testing.assert_array_equal(ours, expected)


def test_axpy_scales_bottom_1_and_adds_bottom_2():
    """SENet's caffe_axpy(scale[n, c], x, top = copy of y). OpenCV 4.12 swaps x and y."""
    a, x, y = (RNG.standard_normal(s) for s in ((2, 3, 1, 1), (2, 3, 4, 4), (2, 3, 4, 4)))
    expected = y.copy()
    for n in range(2):
        for c in range(3):
            expected[n, c] += a[n, c, 0, 0] * x[n, c]
    ours = Axpy()(*(torch.from_numpy(v) for v in (a, x, y))).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-12)


@pytest.mark.parametrize("across_spatial,shared", [(True, True), (False, False)])
def test_normalize_is_ssds(across_spatial, shared):
    x = RNG.standard_normal((2, 3, 4, 5))
    scale = np.array([2.0]) if shared else np.array([1.0, 2.0, 3.0])
    module = Normalize(len(scale), across_spatial, 1e-10).double()
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(scale))
        ours = module(torch.from_numpy(x)).numpy()
    expected = np.empty_like(x)
    for n in range(2):
        if across_spatial:
            expected[n] = x[n] / math.sqrt((x[n] ** 2).sum() + 1e-10)
        else:
            expected[n] = x[n] / np.sqrt((x[n] ** 2).sum(0, keepdims=True) + 1e-10)
        expected[n] *= scale.reshape(-1, 1, 1)
    np.testing.assert_allclose(ours, expected, rtol=1e-12)


def test_shuffle_channel_is_shufflenets():
    """Top channel j * group + i is bottom channel i * (C / group) + j."""
    x = torch.arange(6.0).reshape(1, 6, 1, 1)
    assert ShuffleChannel(3)(x).reshape(-1).tolist() == [0, 2, 4, 1, 3, 5]


def test_depthwise_convolution_is_a_grouped_one():
    text = """input: "x" input_shape { dim: 1 dim: 4 dim: 7 dim: 7 }
    layer { name: "dw" type: "ConvolutionDepthwise" bottom: "x" top: "y"
            convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1
                                weight_filler { type: "gaussian" } } }"""
    module = netdef.load(text)
    x = torch.randn(1, 4, 7, 7)
    conv = module.get_submodule("dw")
    expected = torch.nn.functional.conv2d(x, conv.weight, conv.bias, 2, 1, groups=4)
    assert conv.weight.shape == (4, 1, 3, 3)
    assert torch.allclose(module(x=x)["y"], expected)


def test_depthwise_convolution_keeps_the_channels():
    text = """input: "x" input_shape { dim: 1 dim: 4 dim: 7 dim: 7 }
    layer { name: "dw" type: "ConvolutionDepthwise" bottom: "x" top: "y"
            convolution_param { num_output: 8 kernel_size: 3 } }"""
    with pytest.raises(netdef.NetdefError, match="num_output 8 differs from the input's 4"):
        netdef.load(text)


def test_dropout_without_train_scaling_scales_at_test_time():
    text = """input: "x" input_shape { dim: 2 dim: 3 }
    layer { name: "d" type: "Dropout" bottom: "x" top: "y"
            dropout_param { dropout_ratio: 0.25 scale_train: false } }"""
    x = torch.randn(2, 3)
    assert torch.allclose(netdef.load(text)(x=x)["y"], 0.75 * x)


def test_deeplab_v1_padding_in_a_v1_file():
    text = """input: "x" input_dim: 1 input_dim: 2 input_dim: 5 input_dim: 5
    layers { name: "pad" type: PADDING bottom: "x" top: "p" padding_param { pad_beg: -1 pad_end: -2 } }
    layers { name: "conv" type: CONVOLUTION bottom: "p" top: "c"
             convolution_param { num_output: 3 kernel_size: 1 } }"""
    from netdef.compiler.analysis import analyze

    report = analyze(text)
    assert report.blob("p").shape == (1, 2, 2, 2)
    assert report.blob("p").rf["x"]["offset"] == [1, 1]  # the crop starts one pixel in
    x = torch.randn(1, 2, 5, 5)
    module = netdef.load(text, outputs=["p"])
    assert torch.equal(module(x=x)["p"], x[:, :, 1:3, 1:3])
