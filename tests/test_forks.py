"""The detection and mobile families' real nets (../shared/corpus-forks): every file checks
cleanly in the phases it defines, every deploy file runs a forward on seeded weights, and
where OpenCV 4.12 runs the net, its outputs agree (relative L2 <= 1e-4; detections as row
sets, sorted, with equal counts)."""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import netdef
from netdef.compiler.analysis import check_net
from netdef.compiler.bind import build_module
from netdef.compiler.weights import write_caffemodel

from .conftest import ROOT

FORKS = ROOT.parent / "shared" / "corpus-forks"
SSD = "xzgz+caffe-ssd/models/VGGNet/VOC0712/SSD_300x300"
FASTER_RCNN = "rbgirshick+py-faster-rcnn/models/pascal_voc"
# file -> the phases it defines (a TRAIN-only data layer leaves TEST without data, as in Caffe)
PHASES = {
    f"{SSD}/deploy.prototxt": ("TEST",),
    f"{SSD}/train.prototxt": ("TRAIN",),
    f"{FASTER_RCNN}/VGG16/faster_rcnn_end2end/test.prototxt": ("TEST",),
    f"{FASTER_RCNN}/ZF/faster_rcnn_end2end/train.prototxt": ("TRAIN",),
    "gklz1982+caffe-yolov2/examples/indoor/eval_detection/deploy.prototxt": ("TEST",),
    "hujie-frank+SENet/models/SE-ResNet-50.prototxt": ("TEST",),
    "farmingyard+ShuffleNet/shufflenet_1x_g3_deploy.prototxt": ("TEST",),
    "natanielruiz+net-archive/parsenet/VGG_VOC2012ext.prototxt": ("TRAIN", "TEST"),
}
DEPLOY = [name for name in PHASES if "train" not in name and "parsenet" not in name]


def test_the_table_lists_every_fork_file():
    found = sorted(str(p.relative_to(FORKS)) for p in FORKS.rglob("*.prototxt"))
    assert found == sorted(PHASES)


@pytest.mark.parametrize("name,phase", [(n, p) for n, phases in PHASES.items() for p in phases])
def test_checks_cleanly(name, phase, cli):
    code, out, err = cli("check", FORKS / name, "--phase", phase)
    assert code == 0, out + err


def test_train_file_without_test_data_fails_as_caffe_would(cli):
    """SSD's train file feeds `data` in TRAIN only: Caffe's TEST net has no producer for it."""
    code, out, err = cli("check", FORKS / SSD / "train.prototxt", "--phase", "TEST")
    assert code == 1 and "bottom 'data' is not produced by any layer" in out + err


def seeded_caffemodel(net, seed: int = 0) -> bytes:
    """Every learned blob seeded so that signals neither vanish nor explode: weights with
    std 1/sqrt(fan-in), biases 0.1 N(0, 1), BatchNorm statistics around (0, 1) with factor 1,
    Normalize scales in [5, 15]."""
    rng = np.random.default_rng(seed)
    module = build_module(net, device="meta")
    layers = []
    for index, target, names in module.caffe_parameters:
        layer = net.layers[index]
        shapes = [tuple(getattr(module.get_submodule(target), name).shape) for name in names]
        layers.append((layer.name, layer.type, [seeded_blob(layer.type, i, shape, rng)
                                                for i, shape in enumerate(shapes)]))
    out = io.BytesIO()
    write_caffemodel(out, layers)
    return out.getvalue()


def seeded_blob(kind: str, index: int, shape: tuple, rng) -> np.ndarray:
    if kind == "BatchNorm":
        value = [0.1 * rng.standard_normal(shape), rng.uniform(0.5, 1.5, shape), np.ones(shape)]
        return value[index].astype(np.float32)
    if kind == "Normalize":
        return rng.uniform(5, 15, shape).astype(np.float32)
    if kind == "Scale":
        return (rng.uniform(0.5, 1.5, shape) if index == 0
                else 0.1 * rng.standard_normal(shape)).astype(np.float32)
    if index == 0:
        return (rng.standard_normal(shape) / np.sqrt(max(np.prod(shape[1:]), 1))).astype(np.float32)
    return (0.1 * rng.standard_normal(shape)).astype(np.float32)


def feeds_for(net, seed: int = 1) -> dict[str, np.ndarray]:
    """An image-like input per data blob; im_info is the image's height, width and scale 1."""
    rng = np.random.default_rng(seed)
    feeds = {net.blobs[b].name: rng.uniform(-1, 1, net.blobs[b].shape).astype(np.float32)
             for b in net.input_blobs}
    if "im_info" in feeds:
        height, width = feeds["data"].shape[2:]
        feeds["im_info"] = np.array([[height, width, 1.0]], np.float32)
    return feeds


def opencv_axpy(text: str) -> str:
    """The same net as OpenCV 4.12 must read it: its Axpy scales bottom 2 and adds bottom 1,
    the fork (and netdef) scale bottom 1 and add bottom 2, so the two are swapped."""
    pattern = re.compile(r'(type: "Axpy"\s*bottom: "[^"]+"\s*bottom: )"([^"]+)"(\s*bottom: )"([^"]+)"')
    swapped, count = pattern.subn(r'\1"\4"\3"\2"', text)
    assert count, "no Axpy layer found"
    return swapped


def run_both(path: Path, tmp_path, opencv_text=None):
    """(netdef's outputs, OpenCV's outputs by the same names) on seeded weights."""
    cv2 = pytest.importorskip("cv2")
    net, problems = check_net(path.read_text())
    assert not [p for p in problems if not p.warning], problems
    model = tmp_path / "seeded.caffemodel"
    model.write_bytes(seeded_caffemodel(net))
    feeds = feeds_for(net)
    module = netdef.load(path, model)
    with torch.no_grad():
        ours = module(**{name: torch.from_numpy(value) for name, value in feeds.items()})
    cv_path = path
    if opencv_text is not None:
        cv_path = tmp_path / "for-opencv.prototxt"
        cv_path.write_text(opencv_text(path.read_text()))
    cv_net = cv2.dnn.readNetFromCaffe(str(cv_path), str(model))
    for name, value in feeds.items():
        cv_net.setInput(value, name)
    producers = {net.blobs[b].name: net.layers[net.blobs[b].producer].name
                 for b in net.blobs if net.blobs[b].producer is not None}
    known = set(cv_net.getLayerNames())  # OpenCV may name a layer after its top instead
    theirs = cv_net.forward([producers[name] if producers[name] in known else name
                             for name in ours])
    return {name: tensor.numpy() for name, tensor in ours.items()}, dict(zip(ours, theirs))


def relative_l2(ours, theirs) -> float:
    return float(np.linalg.norm(ours - theirs) / max(np.linalg.norm(theirs), 1e-30))


def paired_rows(ours: np.ndarray, theirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two detection sets (... x 7) as rows paired nearest to nearest, in `theirs`' order. No
    sorting key: float noise can put a value on either side of any rounding, and order two
    near-equal rows either way."""
    ours, theirs = ours.reshape(-1, 7), theirs.reshape(-1, 7)
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    free = np.ones(len(ours), dtype=bool)
    order = []
    for row in theirs:
        distance = np.where(free, np.abs(ours - row).max(axis=1), np.inf)
        order.append(int(distance.argmin()))
        free[order[-1]] = False
    return ours[order], theirs


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in DEPLOY if "faster_rcnn" not in n])
def test_matches_opencv(name, tmp_path):
    ours, theirs = run_both(FORKS / name, tmp_path, opencv_axpy if "SENet" in name else None)
    for blob, value in ours.items():
        reference = theirs[blob]
        if blob == "detection_out":
            assert value.shape == reference.shape, (value.shape, reference.shape)
            np.testing.assert_allclose(*paired_rows(value, reference), rtol=1e-4, atol=1e-5)
            assert len(value.reshape(-1, 7)) > 10  # a weak test would compare no detections
            continue
        reference = reference.reshape(value.shape)
        assert reference.std() > 0, f"{blob}: the reference output is constant; weak test"
        assert relative_l2(value, reference) <= 1e-4, blob


UNKNOWN = """name: "exotic"
input: "data" input_shape { dim: 1 dim: 3 dim: 32 dim: 32 }
layer { name: "c1" type: "Convolution" bottom: "data" top: "c1"
        convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "weird" type: "ROIAlign" bottom: "c1" top: "w" }
layer { name: "c2" type: "Convolution" bottom: "w" top: "c2"
        convolution_param { num_output: 4 kernel_size: 3 } }
"""


def test_unknown_type_is_an_error_for_check_only(tmp_path, cli):
    """check refuses the file; info and draw analyse around the unknown layer."""
    path = tmp_path / "exotic.prototxt"
    path.write_text(UNKNOWN)
    code, out, err = cli("check", path)
    assert code == 1 and ":5: layer 'weird' (ROIAlign): unknown layer type 'ROIAlign'" in out + err
    assert "did you mean" not in out + err  # ROIPooling is another layer, not a typo
    code, out, err = cli("info", path)
    assert code == 0 and "warning: unknown layer type 'ROIAlign'" in err
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:-1]}  # not total
    assert rows == {"data": "1x3x32x32", "c1": "1x4x30x30", "w": "?", "c2": "?"}
    code, out, err = cli("info", path, "--input", "w=1,4,30,30")
    assert code == 0 and out.split("\nc2")[1].split()[0] == "1x4x28x28"
    code, out, err = cli("draw", path, "-o", tmp_path / "exotic.dot")
    assert code == 0
    dot = (tmp_path / "exotic.dot").read_text()
    assert "unknown type: not analysed" in dot and "1x4x30x30" in dot


@pytest.mark.parametrize("typo,suggestion", [("Permute2", "Permute"), ("Relu", "ReLU"),
                                             ("Normalise", "Normalize"), ("ROIAlign", None)])
def test_did_you_mean_only_when_plausible(typo, suggestion):
    net, problems = check_net(UNKNOWN.replace("ROIAlign", typo))
    message = next(p.message for p in problems if not p.warning)
    assert (f"did you mean '{suggestion}'" in message) if suggestion else \
        "did you mean" not in message


def test_outputs_choose_internal_blobs_and_silenced_outputs_stay():
    text = """input: "x" input_shape { dim: 1 dim: 2 dim: 4 dim: 4 }
    layer { name: "r" type: "ReLU" bottom: "x" top: "r" }
    layer { name: "s" type: "Sigmoid" bottom: "r" top: "s" }
    layer { name: "t" type: "TanH" bottom: "r" top: "t" }
    layer { name: "quiet" type: "Silence" bottom: "t" }"""
    x = torch.randn(1, 2, 4, 4)
    assert sorted(netdef.load(text)(x=x)) == ["s", "t"]  # t is read by Silence only
    out = netdef.load(text, outputs=["r"])(x=x)
    assert list(out) == ["r"] and torch.equal(out["r"], x.clamp_min(0))
    with pytest.raises(netdef.UsageError, match="no blob named 'nope'"):
        netdef.load(text, outputs=["nope"])


@pytest.mark.slow
def test_mobilenet_ssd_matches_opencv(tmp_path):
    """A MobileNet-SSD (chuanqi305's layout, 1917 priors) built from the fork layers."""
    from .mobilenet_ssd import mobilenet_ssd

    path = tmp_path / "mobilenet_ssd.prototxt"
    path.write_text(mobilenet_ssd())
    ours, theirs = run_both(path, tmp_path)
    value, reference = ours["detection_out"], theirs["detection_out"]
    assert value.shape == reference.shape and value.shape[2] > 10
    np.testing.assert_allclose(*paired_rows(value, reference), rtol=1e-4, atol=1e-5)


def test_parsenet_trains_a_step_forward():
    """ParseNet's TRAIN net (Normalize, bin_size pooling, UnPooling to a second bottom,
    filter_stride dilations) runs, the data layers' tops fed as inputs."""
    path = FORKS / "natanielruiz+net-archive/parsenet/VGG_VOC2012ext.prototxt"
    inputs = {"data": (1, 3, 96, 96), "label": (1, 1, 96, 96)}
    module = netdef.load(path, phase="TRAIN", inputs=inputs)
    losses = module(data=torch.randn(1, 3, 96, 96) * 50,
                    label=torch.randint(0, 21, (1, 1, 96, 96)).float())
    assert len(losses) == 1 and torch.isfinite(next(iter(losses.values())))
