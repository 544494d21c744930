"""Every common computing layer in one small net, against OpenCV 4.12, with random blobs for
every weighted layer (BatchNorm's mean, variance and scale factor included)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import netdef
from netdef.compiler.analysis import check_net
from netdef.compiler.weights import write_caffemodel

from .conftest import ROOT

cv2 = pytest.importorskip("cv2")
ZOO = ROOT / "tests" / "nets" / "layer_zoo.prototxt"


def zoo_weights(rng) -> bytes:
    def r(*shape, low=-1.0, high=1.0):
        return rng.uniform(low, high, shape).astype(np.float32)
    blobs = {
        "conv": [r(6, 2, 3, 3), r(6)],
        # Caffe stores mean and variance times a factor s; s = 2.5 here
        "bn": [2.5 * r(6), 2.5 * r(6, low=0.5, high=2), np.array([2.5], np.float32)],
        "scale": [r(6), r(6)],
        "prelu": [r(6, low=0, high=0.5)],
        "deconv": [r(7, 4, 4, 4), r(4)],
        "fc": [r(7, 5 * 5 * 6), r(7)],
    }
    net, _ = check_net(ZOO)
    layers = [(layer.name, layer.type, blobs[layer.name]) for layer in net.layers
              if layer.name in blobs]
    out = io.BytesIO()
    write_caffemodel(out, layers)
    return out.getvalue()


def test_layer_zoo_matches_opencv(tmp_path):
    rng = np.random.default_rng(3)
    model = tmp_path / "zoo.caffemodel"
    model.write_bytes(zoo_weights(rng))
    x = rng.standard_normal((2, 4, 9, 11)).astype(np.float32)
    module = netdef.load(ZOO, model)
    with torch.no_grad():
        ours = module(data=torch.from_numpy(x))
    assert set(ours) == {"softmax", "fc", "mvn"}
    cv_net = cv2.dnn.readNetFromCaffe(str(ZOO), str(model))
    cv_net.setInput(x, "data")
    names = list(ours)
    for name, theirs in zip(names, cv_net.forward(names)):
        mine = ours[name].numpy()
        theirs = theirs.reshape(mine.shape)
        error = np.linalg.norm(mine - theirs) / np.linalg.norm(theirs)
        assert error <= 1e-4, (name, error)


def test_lrn_k_follows_caffe():
    # OpenCV 4.12's importer drops lrn_param.k, so k != 1 is checked against Caffe's formula:
    # x / (k + alpha/n * sum of squares over n neighbouring channels, zero-padded) ** beta
    text = ('layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 5 '
            'dim: 4 dim: 4 } } }\n'
            'layer { name: "l" type: "LRN" bottom: "data" top: "l" '
            'lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 } }')
    x = np.random.default_rng(0).standard_normal((1, 5, 4, 4)).astype(np.float32)
    ours = netdef.load(text)(data=torch.from_numpy(x))["l"].detach().numpy()
    squares = np.pad(x ** 2, ((0, 0), (1, 1), (0, 0), (0, 0)))
    window = sum(squares[:, i:i + 5] for i in range(3))
    assert np.allclose(ours, x / (2 + 0.5 / 3 * window) ** 0.75, atol=1e-6)
