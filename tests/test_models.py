"""The flagship FCN definitions in models/: clean in both phases, the published geometry,
crops that netdef solved and that agree with the coordinate maps."""
from __future__ import annotations

import importlib.util

import pytest

import netdef
from netdef.compiler.analysis import check_net

from .conftest import ROOT

MODELS = ROOT / "models"
NETS = ["fcn32s", "fcn16s", "fcn8s", "fcn8s_crfrnn"]


def generator():
    spec = importlib.util.spec_from_file_location("fcn_models", MODELS / "fcn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_models_check_without_any_problem(name, phase):
    _, problems = check_net(MODELS / f"{name}.prototxt", phase=phase)
    assert [p.format() for p in problems] == []


@pytest.mark.parametrize("name", NETS)
def test_committed_models_are_what_the_generator_writes(name):
    assert (MODELS / f"{name}.prototxt").read_text() == generator().generate(name)


@pytest.mark.parametrize("name, crops", [("fcn32s", {"score": 19}),
                                         ("fcn16s", {"score_pool4c": 5, "score": 27}),
                                         ("fcn8s", {"score_pool4c": 5, "score_pool3c": 9,
                                                    "score": 31})])
def test_crop_offsets_come_from_the_solver(name, crops):
    # the same net without offsets: the solver must give exactly what the file says
    text_without = generator().NETS[name]({})
    net, _ = check_net(text_without)
    solved = {layer.name: layer.solution["offset"] for layer in net.layers if layer.solution}
    assert solved == {crop: [offset, offset] for crop, offset in crops.items()}
    written = netdef.parse(MODELS / f"{name}.prototxt")
    assert {layer.name: list(layer.crop_param.offset) for layer in written.layer
            if layer.type == "Crop"} == {crop: [offset] for crop, offset in crops.items()}


def test_fcn8s_test_net_scores_the_whole_image():
    report = netdef.analyze(MODELS / "fcn8s.prototxt")
    assert report.blob("score").shape == (1, 21, 500, 500)
    assert report.blob("score").rf["data"]["offset"] == [0, 0]
    assert report.blob("score_fr").rf["data"]["size"] == [404, 404]
    assert "loss" not in [blob.name for blob in report.blobs]


def test_fcn8s_train_net_has_the_loss_with_ignore_label():
    net, problems = check_net(MODELS / "fcn8s.prototxt", phase="TRAIN")
    loss = next(layer for layer in net.layers if layer.type == "SoftmaxWithLoss")
    assert loss.param.loss_param.ignore_label == 255
    assert [net.blobs[b].name for b in loss.bottoms] == ["score", "label"]
    assert net.blobs[loss.tops[0]].shape == ()


@pytest.mark.parametrize("side", [1, 37, 224, 699])
def test_fcn8s_crops_fit_every_input_side(side):
    # reference-nets §C1: the crops are valid for sides 1..699
    report = netdef.analyze(MODELS / "fcn8s.prototxt", inputs={"data": (1, 3, side, side)})
    assert report.blob("score").shape == (1, 21, side, side)


def test_crfrnn_model_refines_fcn8s_scores_at_image_size():
    """The CRF head reads the cropped scores (split into unary and Q0) and the image; in TRAIN
    the loss reads its output; the CRF's blobs start at the reference settings."""
    net, problems = check_net(MODELS / "fcn8s_crfrnn.prototxt", phase="TRAIN")
    assert problems == []
    crf = next(layer for layer in net.layers if layer.type == "MultiStageMeanfield")
    assert [net.blobs[b].name for b in crf.bottoms] == ["unary", "Q0", "data"]
    loss = next(layer for layer in net.layers if layer.type == "SoftmaxWithLoss")
    assert net.blobs[loss.bottoms[0]].name == "pred"
    report = netdef.analyze(MODELS / "fcn8s_crfrnn.prototxt", inputs={"data": (2, 3, 64, 48)})
    assert report.blob("pred").shape == (2, 21, 64, 48)
    model = netdef.load(MODELS / "fcn8s_crfrnn.prototxt", device="meta")
    layer = model.get_submodule("inference1")
    assert layer.iterations == 10 and (layer.theta_alpha, layer.theta_beta,
                                       layer.theta_gamma) == (160, 3, 3)
