"""Weights back to Caffe: `netdef convert W.safetensors --net NET -o W.caffemodel`, read by
OpenCV 4.12's Caffe importer (the independent reader), gives the outputs netdef gives from
the safetensors file, on LeNet and on a BatchNorm net whose statistics carry a scale factor
other than 1 (a training snapshot's)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import netdef
from netdef.compiler.weights import read_caffemodel

from .conftest import CORPUS

cv2 = pytest.importorskip("cv2")
LENET = CORPUS / "BVLC+caffe" / "examples" / "mnist" / "lenet.prototxt"

BN_NET = """name: "bn"
input: "data" input_shape { dim: 2 dim: 3 dim: 12 dim: 12 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 8 kernel_size: 3 pad: 1 bias_term: false } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip"
        inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""


def opencv_forward(net_path, weights_path, data: np.ndarray) -> np.ndarray:
    net = cv2.dnn.readNetFromCaffe(str(net_path), str(weights_path))
    net.setInput(data)
    return net.forward()


def netdef_forward(net_path, weights_path, data: np.ndarray) -> np.ndarray:
    module = netdef.load(str(net_path), str(weights_path))
    with torch.no_grad():
        outputs = module(data=torch.from_numpy(data))
    return next(iter(outputs.values())).numpy()


def test_lenet_round_trip_matches_opencv(cli, tmp_path):
    """compile's weights.safetensors (module.tensor keys, seeded fillers) -> caffemodel."""
    code, _, _ = cli("compile", LENET, "-o", tmp_path / "lenet")
    assert code == 0
    code, out, _ = cli("convert", tmp_path / "lenet" / "weights.safetensors", "--net", LENET,
                       "-o", tmp_path / "lenet.caffemodel")
    assert code == 0 and "8 tensors" in out  # conv1, conv2, ip1, ip2: weight and bias each
    layers = read_caffemodel(str(tmp_path / "lenet.caffemodel"))
    assert [(layer.name, layer.type) for layer in layers] == [
        ("conv1", "Convolution"), ("conv2", "Convolution"), ("ip1", "InnerProduct"),
        ("ip2", "InnerProduct")]
    assert [blob.shape for blob in layers[2].blobs] == [(500, 800), (500,)]  # Caffe's shapes
    data = np.random.default_rng(0).uniform(0, 1, (64, 1, 28, 28)).astype(np.float32)
    ours = netdef_forward(LENET, tmp_path / "lenet" / "weights.safetensors", data)
    theirs = opencv_forward(LENET, tmp_path / "lenet.caffemodel", data)
    np.testing.assert_allclose(theirs.reshape(ours.shape), ours, rtol=1e-4, atol=1e-6)


def test_batchnorm_snapshot_round_trip_matches_opencv(cli, tmp_path):
    """A snapshot's BatchNorm blobs are mean * s, variance * s and s; the caffemodel holds
    mean, variance and 1, and OpenCV agrees with netdef on the snapshot."""
    rng = np.random.default_rng(1)
    factor = 7.5
    blobs = {
        "conv.0": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3,
        "bn.0": (rng.standard_normal(8) * 0.2 * factor).astype(np.float32),
        "bn.1": (rng.uniform(0.5, 2.0, 8) * factor).astype(np.float32),
        "bn.2": np.array([factor], np.float32),
        "scale.0": rng.uniform(0.5, 1.5, 8).astype(np.float32),
        "scale.1": rng.standard_normal(8).astype(np.float32) * 0.1,
        "ip.0": rng.standard_normal((5, 8 * 6 * 6)).astype(np.float32) * 0.1,
        "ip.1": rng.standard_normal(5).astype(np.float32) * 0.1,
    }
    save_file(blobs, str(tmp_path / "snap.safetensors"))
    (tmp_path / "bn.prototxt").write_text(BN_NET)
    code, _, _ = cli("convert", tmp_path / "snap.safetensors", "--net", tmp_path / "bn.prototxt",
                     "-o", tmp_path / "bn.caffemodel")
    assert code == 0
    written = {layer.name: layer.blobs for layer in read_caffemodel(str(tmp_path / "bn.caffemodel"))}
    np.testing.assert_allclose(written["bn"][0], blobs["bn.0"] / factor, rtol=1e-6)
    np.testing.assert_allclose(written["bn"][1], blobs["bn.1"] / factor, rtol=1e-6)
    assert written["bn"][2].tolist() == [1.0]
    data = rng.standard_normal((2, 3, 12, 12)).astype(np.float32)
    ours = netdef_forward(tmp_path / "bn.prototxt", tmp_path / "snap.safetensors", data)
    theirs = opencv_forward(tmp_path / "bn.prototxt", tmp_path / "bn.caffemodel", data)
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-6)


def test_caffemodel_output_needs_the_net(cli, tmp_path):
    save_file({"conv.0": np.zeros((1, 1, 1, 1), np.float32)}, str(tmp_path / "w.safetensors"))
    code, _, err = cli("convert", tmp_path / "w.safetensors", "-o", tmp_path / "w.caffemodel")
    assert code == 2 and "needs --net" in err
