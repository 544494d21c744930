"""`netdef run` with image inputs and image outputs."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from netdef.cli import main
from netdef.compiler.weights import write_caffemodel

RNG = np.random.default_rng(11)
MEAN = (104.0, 117.0, 123.0)
IDENTITY = """
input: "data" input_shape { dim: 1 dim: 3 dim: 4 dim: 4 }
layer { name: "same" type: "Power" bottom: "data" top: "same" }
"""
SCORER = """
input: "data" input_shape { dim: 1 dim: 3 dim: 4 dim: 4 }
layer { name: "score" type: "Convolution" bottom: "data" top: "score"
  convolution_param { num_output: 4 kernel_size: 1 } }
"""


@pytest.fixture
def picture(tmp_path):
    rgb = RNG.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    path = tmp_path / "in.png"
    Image.fromarray(rgb).save(path)
    return path, rgb


def _net(tmp_path, text):
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    return str(path)


def test_image_input_is_bgr_minus_the_mean_at_its_own_size(tmp_path, picture):
    path, rgb = picture
    out = tmp_path / "out.npz"
    assert main(["run", _net(tmp_path, IDENTITY), "--input", f"data={path}",
                 "--mean", "104,117,123", "--out", str(out)]) == 0
    data = np.load(out)["same"]
    expected = (rgb[:, :, ::-1].astype(np.float32) - np.array(MEAN, np.float32)).transpose(2, 0, 1)
    assert data.shape == (1, 3, 7, 9)
    assert np.array_equal(data[0], expected)


def test_three_channel_output_is_the_picture_again(tmp_path, picture):
    path, rgb = picture
    out = tmp_path / "out.png"
    assert main(["run", _net(tmp_path, IDENTITY), "--input", f"data={path}",
                 "--mean", "104,117,123", "--out", str(out)]) == 0
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), rgb)


def test_scores_become_voc_coloured_labels(tmp_path, picture):
    path, rgb = picture
    weights = np.zeros((4, 3, 1, 1), np.float32)
    weights[[0, 1, 2], [0, 1, 2]] = 1  # class c scores channel c (B, G, R); class 3 scores 150
    model = io.BytesIO()
    write_caffemodel(model, [("score", "Convolution", [weights, np.array([0, 0, 0, 150], np.float32)])])
    (tmp_path / "w.caffemodel").write_bytes(model.getvalue())
    out = tmp_path / "labels.png"
    assert main(["run", _net(tmp_path, SCORER), "--weights", str(tmp_path / "w.caffemodel"),
                 "--input", f"data={path}", "--out", str(out)]) == 0
    bgr = rgb[:, :, ::-1].astype(np.float32)
    expected = np.concatenate([bgr, np.full(bgr.shape[:2] + (1,), 150.0)], 2).argmax(2)
    labels = Image.open(out)
    assert labels.mode == "P"
    assert np.array_equal(np.asarray(labels), expected)
    palette = np.array(labels.getpalette()[:3 * 16]).reshape(16, 3)
    # PASCAL VOC: background black, aeroplane (128,0,0), bicycle (0,128,0), bird (128,128,0),
    # person (192,128,128)
    assert palette[[0, 1, 2, 3, 15]].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0],
                                                  [128, 128, 0], [192, 128, 128]]


def test_bad_image_arguments_are_usage_errors(tmp_path, picture, capsys):
    path, _ = picture
    net = _net(tmp_path, IDENTITY)
    assert main(["run", net, "--input", f"data={tmp_path / 'x.txt'}"]) == 2
    assert main(["run", net, "--input", f"data={path}", "--mean", "1,2"]) == 2
    assert main(["run", net, "--input", f"data={path}", "--out", str(tmp_path / "o.png"),
                 "--out-blob", "nope"]) == 2
    assert "no blob named 'nope'; the net's blobs are data, same" in capsys.readouterr().err
