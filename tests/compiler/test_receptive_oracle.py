"""Property test: receptive field size, stride and offset equal what a one-hot output
unit's input support measures, for random stacks of conv / pool / deconv / crop.

The reference builds each layer as an explicit matrix along the width axis
(numpy, written from Caffe's definitions) and multiplies them: row a of the
product is output unit a's weights over input pixels. Its support gives the
size; its centroid gives the position. Conv and pool weights are all ones
(symmetric, so the centroid is the window centre); deconvolutions use
bilinear kernels with K = 2s or 2s - 1, which reproduce linear functions and
sum to one per output, so centroids follow the coordinate map exactly.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import netdef
from netdef.compiler.weights import write_caffemodel

WIDTH = 200
LONGEST = 1500  # blobs beyond it make the reference matrices too big


def scatter(out: int, n: int, rows, cols, weights) -> np.ndarray:
    """An out x n matrix with weights added at (rows, cols), ignoring indices outside the input."""
    rows, cols, weights = (np.broadcast_to(a, np.broadcast_shapes(
        np.shape(rows), np.shape(cols), np.shape(weights))).ravel() for a in (rows, cols, weights))
    keep = (cols >= 0) & (cols < n) & (rows >= 0) & (rows < out)
    m = np.zeros((out, n))
    np.add.at(m, (rows[keep], cols[keep]), weights[keep])
    return m


def conv_matrix(n, k, s, p, d):
    out = (n + 2 * p - (d * (k - 1) + 1)) // s + 1
    o, j = np.ogrid[:max(out, 0), :k]
    return scatter(out, n, o, o * s - p + j * d, 1.0)


def pool_matrix(n, k, s, p):
    out = math.ceil((n + 2 * p - k) / s) + 1
    if p and (out - 1) * s >= n + p:
        out -= 1
    o, j = np.ogrid[:out, :k]
    start = o * s - p
    divisor = np.maximum(np.minimum(start + k, n + p) - start, 1)  # Caffe's AVE divisor
    return scatter(out, n, o, start + j, 1.0 / divisor)


def bilinear(k):
    f = math.ceil(k / 2)
    c = (k - 1) / (2 * f)  # BVLC's centre
    return np.array([1 - abs(x / f - c) for x in range(k)])


def deconv_matrix(n, k, s, p):
    out = s * (n - 1) + k - 2 * p
    i, j = np.ogrid[:n, :k]
    return scatter(out, n, i * s - p + j, i, bilinear(k)[j])


def crop_matrix(n, offset, size):
    m = np.zeros((size, n))
    m[np.arange(size), np.arange(size) + offset] = 1
    return m


layers = st.one_of(
    st.fixed_dictionaries({"type": st.just("conv"), "k": st.integers(1, 5), "s": st.integers(1, 3),
                           "p": st.integers(0, 2), "d": st.integers(1, 2)}),
    st.fixed_dictionaries({"type": st.just("pool"), "k": st.integers(1, 3), "s": st.integers(1, 3),
                           "p": st.integers(0, 1)}),
    st.fixed_dictionaries({"type": st.just("deconv"), "s": st.integers(1, 3), "odd": st.booleans(),
                           "p": st.integers(0, 1)}),
    st.fixed_dictionaries({"type": st.just("crop"), "offset": st.integers(0, 4),
                           "trim": st.integers(0, 3)}),
)


def build(stack):
    """The prototxt and the reference matrix (output units x input pixels) of a stack."""
    text = ['layer { name: "in" type: "Input" top: "data" '
            f'input_param {{ shape {{ dim: 1 dim: 1 dim: 1 dim: {WIDTH} }} }} }}']
    total, bottom, n = np.eye(WIDTH), "data", WIDTH
    weights = []  # (layer, type, blobs) for the lowered module: ones and 1-D bilinear tents
    for index, spec in enumerate(stack):
        top = f"b{index}"
        if spec["type"] == "conv":
            m = conv_matrix(n, spec["k"], spec["s"], spec["p"], spec["d"])
            weights.append((top, "Convolution", [np.ones((1, 1, 1, spec["k"]), np.float32),
                                                 np.zeros(1, np.float32)]))
            body = (f'type: "Convolution" convolution_param {{ num_output: 1 kernel_size: 1 '
                    f'kernel_size: {spec["k"]} stride: 1 stride: {spec["s"]} pad: 0 pad: {spec["p"]} '
                    f'dilation: 1 dilation: {spec["d"]} }}')
        elif spec["type"] == "pool":
            if spec["p"] >= spec["k"]:
                return None
            m = pool_matrix(n, spec["k"], spec["s"], spec["p"])
            body = (f'type: "Pooling" pooling_param {{ pool: AVE kernel_h: 1 kernel_w: {spec["k"]} '
                    f'stride_h: 1 stride_w: {spec["s"]} pad_h: 0 pad_w: {spec["p"]} }}')
        elif spec["type"] == "deconv":
            s = spec["s"]
            k = 2 * s - 1 if spec["odd"] else 2 * s
            m = deconv_matrix(n, k, s, spec["p"])
            weights.append((top, "Deconvolution", [bilinear(k).reshape(1, 1, 1, k).astype(np.float32),
                                                   np.zeros(1, np.float32)]))
            body = (f'type: "Deconvolution" convolution_param {{ num_output: 1 kernel_size: 1 '
                    f'kernel_size: {k} stride: 1 stride: {s} pad: 0 pad: {spec["p"]} }}')
        else:
            size = n - spec["offset"] - spec["trim"]
            if size < 1:
                return None
            m = crop_matrix(n, spec["offset"], size)
            text.append(f'layer {{ name: "r{index}" type: "Input" top: "r{index}" input_param {{ '
                        f'shape {{ dim: 1 dim: 1 dim: 1 dim: {size} }} }} }}')
            body = f'type: "Crop" crop_param {{ axis: 3 offset: {spec["offset"]} }}'
            body += f' bottom: "r{index}"'
        if not 1 <= m.shape[0] <= LONGEST:
            return None
        text.append(f'layer {{ name: "{top}" bottom: "{bottom}" {body} top: "{top}" }}')
        total, bottom, n = m @ total, top, m.shape[0]
    return "\n".join(text), total, bottom, weights


def measured(total):
    """Size, stride and offset from the rows that never touch the image border."""
    supports = [np.flatnonzero(row) for row in total]
    widest = max(s[-1] - s[0] + 1 for s in supports if len(s))
    interior = [a for a, s in enumerate(supports)
                if len(s) and s[0] >= widest and s[-1] <= WIDTH - 1 - widest]
    if len(interior) < 20:
        return None
    centroid = {a: total[a] @ np.arange(WIDTH) / total[a].sum() for a in interior}
    a = interior[len(interior) // 2]
    stride = centroid[a + 1] - centroid[a]
    size = max(supports[a][-1] - supports[a][0] + 1 for a in interior)
    return size, stride, centroid[a] - a * stride


@settings(max_examples=150, deadline=None)
@given(st.lists(layers, min_size=1, max_size=4))
def test_receptive_field_matches_one_hot_support(stack):
    built = build(stack)
    assume(built is not None)
    text, total, top, _ = built
    reference = measured(total)
    assume(reference is not None)
    rf = netdef.analyze(text).blob(top).rf["data"]
    size, stride, offset = reference
    assert rf["size"][1] == size
    assert abs(rf["stride"][1] - stride) < 1e-9
    assert abs(rf["offset"][1] - offset) < 1e-9
    assert (rf["size"][0], rf["stride"][0], rf["offset"][0]) == (1, 1, 0)  # untouched height


def lowered_matrix(text: str, top: str, weights, folder) -> np.ndarray:
    """The lowered torch module's matrix: the net is linear (constant-one and bilinear weights,
    zero biases, average pooling), so feeding every one-hot input at once gives its columns."""
    import torch

    model = folder / "stack.caffemodel" if weights else None
    if model:
        with open(model, "wb") as handle:
            write_caffemodel(handle, weights)
    module = netdef.load(text, model, inputs={"data": (WIDTH, 1, 1, WIDTH)})
    extra = {name: torch.zeros(WIDTH, *shape[1:]) for name, shape in
             netdef.analyze(text).inputs.items() if name != "data"}
    with torch.no_grad():
        out = module(data=torch.eye(WIDTH).reshape(WIDTH, 1, 1, WIDTH), **extra)[top]
    return out.reshape(WIDTH, -1).T.double().numpy()


@settings(max_examples=60, deadline=None)
@given(st.lists(layers, min_size=1, max_size=3))
def test_lowered_module_has_the_reference_support_and_receptive_field(tmp_path_factory, stack):
    built = build(stack)
    assume(built is not None)
    text, total, top, weights = built
    reference = measured(total)
    assume(reference is not None)
    lowered = lowered_matrix(text, top, weights, tmp_path_factory.mktemp("stack"))
    # the torch module computes exactly the reference operator ...
    assert lowered.shape == total.shape
    assert np.allclose(lowered, total, atol=1e-5 * max(1.0, np.abs(total).max()))
    # ... so its one-hot supports give netdef's receptive field too
    size, stride, offset = measured(np.where(np.abs(lowered) > 1e-6 * np.abs(lowered).max(),
                                             lowered, 0))
    rf = netdef.analyze(text).blob(top).rf["data"]
    assert (rf["size"][1], rf["stride"][1]) == (size, pytest.approx(stride, abs=1e-4))
    assert rf["offset"][1] == pytest.approx(offset, abs=1e-4)  # float32 centroids
