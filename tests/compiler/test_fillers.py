"""Caffe's fillers, checked against their definitions and reference-nets §C5."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import netdef
from netdef.compiler.fillers import bilinear, fill
from netdef.proto import netdef_pb2 as pb

from ..conftest import ROOT


def filler(**fields) -> pb.FillerParameter:
    return pb.FillerParameter(**fields)


RNG = np.random.default_rng(0)


def test_bilinear_kernels_of_reference_nets():
    assert np.allclose(bilinear((1, 1, 4, 4))[0, 0, 0], np.array([0.25, 0.75, 0.75, 0.25]) * 0.25)
    assert np.allclose(bilinear((1, 1, 4, 4))[0, 0, 1], np.array([0.25, 0.75, 0.75, 0.25]) * 0.75)
    row = np.array([1, 3, 5, 7, 9, 11, 13, 15, 15, 13, 11, 9, 7, 5, 3, 1]) / 16
    assert np.allclose(bilinear((2, 3, 16, 16))[1, 2], np.outer(row, row))


@pytest.mark.parametrize("kind, check", [
    ("gaussian", lambda v: abs(v.std() - 0.5) < 0.02 and abs(v.mean() - 1) < 0.02),
    ("xavier", lambda v: np.abs(v).max() <= np.sqrt(3 / 600) and v.std() > 0.8 * np.sqrt(1 / 600)),
    ("msra", lambda v: abs(v.std() - np.sqrt(2 / 600)) < 0.005),
    ("uniform", lambda v: v.min() >= -2 and v.max() <= 3 and v.max() > 2.9),
    ("constant", lambda v: np.all(v == 0.7)),
    ("positive_unitball", lambda v: np.allclose(v.reshape(64, -1).sum(1), 1) and v.min() >= 0),
])
def test_filler_definitions(kind, check):
    param = {"gaussian": filler(type="gaussian", mean=1, std=0.5),
             "uniform": filler(type="uniform", min=-2, max=3),
             "constant": filler(type="constant", value=0.7)}.get(kind, filler(type=kind))
    values = fill((64, 6, 10, 10), param, RNG)  # fan-in 600
    assert values.dtype == np.float32 and values.shape == (64, 6, 10, 10)
    assert check(values)


def test_load_without_weights_uses_the_prototxt_fillers():
    module = netdef.load(ROOT / "models" / "fcn8s.prototxt", inputs={"data": (1, 3, 64, 64)})
    weight = module.upscore8.weight.detach().numpy()
    assert weight.shape == (21, 1, 16, 16)  # grouped: one filter per class
    assert np.allclose(weight[5, 0], bilinear((1, 1, 16, 16))[0, 0])
    assert torch.count_nonzero(module.score_fr.weight) == 0  # zero-initialised scorer
    assert module.conv1_1.weight.std() > 0  # xavier
    again = netdef.load(ROOT / "models" / "fcn8s.prototxt", inputs={"data": (1, 3, 64, 64)})
    assert torch.equal(again.conv3_1.weight, module.conv3_1.weight)  # seeded


def test_caffe_defaults_without_fillers():
    text = ('layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 '
            'dim: 3 dim: 3 } } }\n'
            'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
            'convolution_param { num_output: 2 kernel_size: 1 } }\n'
            'layer { name: "s" type: "Scale" bottom: "c" top: "s" }\n'
            'layer { name: "p" type: "PReLU" bottom: "s" top: "p" }\n')
    module = netdef.load(text)
    assert torch.count_nonzero(module.c.weight) == 0  # Caffe's default filler: constant 0
    assert torch.all(module.s.weight == 1) and torch.allclose(module.p.weight, torch.tensor(0.25))
