"""Net surgery while binding weights (FCN's transplant) and the progress bar on large files."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import netdef
from netdef.cli import main
from netdef.compiler import progress
from netdef.compiler.weights import write_caffemodel

RNG = np.random.default_rng(3)

CLASSIFIER = """
name: "classifier"
input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 stride: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc6" type: "InnerProduct" bottom: "conv1" top: "fc6" inner_product_param { num_output: 6 } }
layer { name: "fc8" type: "InnerProduct" bottom: "fc6" top: "fc8" inner_product_param { num_output: 5 } }
"""

FULLY_CONVOLUTIONAL = """
name: "fcn"
input: "data" input_shape { dim: 1 dim: 3 dim: 12 dim: 12 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 stride: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc6" type: "Convolution" bottom: "conv1" top: "fc6"
  convolution_param { num_output: 6 kernel_size: 3 } }
layer { name: "fc8" type: "Convolution" bottom: "fc6" top: "score"
  convolution_param { num_output: SCORES kernel_size: 1 } }
"""


@pytest.fixture
def classifier_weights(tmp_path):
    blobs = [("conv1", "Convolution", [RNG.standard_normal((4, 3, 3, 3)), RNG.standard_normal(4)]),
             ("fc6", "InnerProduct", [RNG.standard_normal((6, 36)), RNG.standard_normal(6)]),
             ("fc8", "InnerProduct", [RNG.standard_normal((5, 6)), RNG.standard_normal(5)])]
    out = io.BytesIO()
    write_caffemodel(out, [(name, kind, [b.astype(np.float32) for b in arrays])
                           for name, kind, arrays in blobs])
    path = tmp_path / "classifier.caffemodel"
    path.write_bytes(out.getvalue())
    return path


def test_fully_connected_weights_need_convolutionalize(classifier_weights):
    with pytest.raises(netdef.WeightError, match="--convolutionalize"):
        netdef.load(FULLY_CONVOLUTIONAL.replace("SCORES", "5"), classifier_weights)


def test_convolutionalized_net_scores_every_window_like_the_classifier(classifier_weights):
    """Each output position of the transplanted net is the classifier on that 7x7 window."""
    image = torch.from_numpy(RNG.standard_normal((1, 3, 12, 12)).astype(np.float32))
    fcn = netdef.load(FULLY_CONVOLUTIONAL.replace("SCORES", "5"), classifier_weights,
                      convolutionalize=True)
    classifier = netdef.load(CLASSIFIER, classifier_weights)
    with torch.no_grad():
        scores = fcn(data=image)["score"]
        assert scores.shape == (1, 5, 3, 3)
        for i in range(3):
            for j in range(3):
                window = image[:, :, 2 * i:2 * i + 7, 2 * j:2 * j + 7]
                window = torch.nn.functional.pad(window, (0, 1, 0, 1))  # 8x8; the last row unused
                expected = classifier(data=window)["fc8"][0]
                assert torch.allclose(scores[0, :, i, j], expected, atol=1e-4)
    assert fcn.caffe_unfilled_layers == [] and fcn.caffe_unused_layers == []


def test_expand_score_keeps_the_old_classes_and_fills_the_new(classifier_weights):
    image = torch.from_numpy(RNG.standard_normal((1, 3, 12, 12)).astype(np.float32))
    text = FULLY_CONVOLUTIONAL.replace("SCORES", "7")
    with pytest.raises(netdef.WeightError, match="blob 0: expected shape 7x6x1x1"):
        netdef.load(text, classifier_weights, convolutionalize=True)
    grown = netdef.load(text, classifier_weights, convolutionalize=True, expand_score=["fc8"])
    same = netdef.load(FULLY_CONVOLUTIONAL.replace("SCORES", "5"), classifier_weights,
                       convolutionalize=True)
    with torch.no_grad():
        scores, old = grown(data=image)["score"], same(data=image)["score"]
    assert torch.allclose(scores[:, :5], old, atol=1e-6)
    assert not scores[:, 5:].any()  # the new classes: Caffe's default constant-0 fillers


def test_unmatched_layers_are_reported(classifier_weights, tmp_path, capsys):
    renamed = FULLY_CONVOLUTIONAL.replace("SCORES", "5").replace('name: "fc8"', 'name: "score"')
    path = tmp_path / "fcn.prototxt"
    path.write_text(renamed)
    module = netdef.load(renamed, classifier_weights, convolutionalize=True)
    assert module.caffe_unfilled_layers == ["score"]
    assert module.caffe_unused_layers == ["fc8"]
    code = main(["convert", str(classifier_weights), "--net", str(path), "--convolutionalize",
                 "-o", str(tmp_path / "w.safetensors")])
    err = capsys.readouterr().err
    assert code == 0
    assert "kept their fillers (not in the caffemodel): score" in err
    assert "matched no layer: fc8" in err


def test_surgery_without_a_net_is_a_usage_error(classifier_weights, tmp_path):
    assert main(["convert", str(classifier_weights), "--convolutionalize",
                 "-o", str(tmp_path / "w.safetensors")]) == 2


def test_progress_bar_on_large_files(classifier_weights, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "ALWAYS", True)
    monkeypatch.setattr(progress, "LARGE", 100)  # the test file stands for a > 100 MB one
    netdef.load(CLASSIFIER, classifier_weights)
    assert "loading" in capsys.readouterr().err
    assert main(["convert", str(classifier_weights), "-o", str(tmp_path / "w.safetensors")]) == 0
    assert "writing" in capsys.readouterr().err
    monkeypatch.setattr(progress, "LARGE", 1 << 30)
    netdef.load(CLASSIFIER, classifier_weights)
    assert "loading" not in capsys.readouterr().err
