"""Property test: Convolution, Deconvolution and Pooling output sizes equal OpenCV 4.12's
for random kernel, stride, pad, dilation and input sizes."""
from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import netdef
from netdef.compiler.weights import write_caffemodel

cv2 = pytest.importorskip("cv2")


def opencv_shape(text: str, layer: str, weights: list, data_shape, tmp_path):
    proto, model = tmp_path / "n.prototxt", tmp_path / "n.caffemodel"
    proto.write_text(text)
    out = io.BytesIO()
    write_caffemodel(out, [(layer, "Convolution", weights)] if weights else [])
    model.write_bytes(out.getvalue())
    net = cv2.dnn.readNetFromCaffe(str(proto), str(model))
    net.setInput(np.zeros(data_shape, np.float32), "data")
    return tuple(net.forward(layer).shape)


def header(shape):
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'layer {{ name: "in" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}\n'


windows = st.fixed_dictionaries({
    "side": st.integers(1, 24), "kernel": st.integers(1, 6), "stride": st.integers(1, 4),
    "pad": st.integers(0, 3), "dilation": st.integers(1, 3)})


@settings(max_examples=40, deadline=None)
@given(windows)
def test_convolution_matches_opencv(tmp_path_factory, w):
    extent = w["dilation"] * (w["kernel"] - 1) + 1
    assume(w["side"] + 2 * w["pad"] >= extent)  # OpenCV and Caffe refuse it (an empty output)
    shape = (1, 2, w["side"], w["side"] + 3)
    text = header(shape) + (
        f'layer {{ name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param {{ '
        f'num_output: 3 kernel_size: {w["kernel"]} stride: {w["stride"]} pad: {w["pad"]} '
        f'dilation: {w["dilation"]} bias_term: false }} }}')
    weights = [np.zeros((3, 2, w["kernel"], w["kernel"]), np.float32)]
    ours = netdef.analyze(text).blob("c").shape
    assert ours == opencv_shape(text, "c", weights, shape, tmp_path_factory.mktemp("c"))


@settings(max_examples=40, deadline=None)
@given(windows)
def test_pooling_matches_opencv(tmp_path_factory, w):
    assume(w["pad"] < w["kernel"])  # Caffe rejects it (checked elsewhere)
    shape = (1, 2, w["side"], w["side"] + 2)
    text = header(shape) + (
        f'layer {{ name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param {{ pool: MAX '
        f'kernel_size: {w["kernel"]} stride: {w["stride"]} pad: {w["pad"]} }} }}')
    # Caffe pools one clipped window here, OpenCV refuses (hand-computed tests cover it)
    assume(w["kernel"] <= w["side"] + 2 * w["pad"])
    ours = netdef.analyze(text).blob("p").shape
    assert ours == opencv_shape(text, "p", [], shape, tmp_path_factory.mktemp("p"))
