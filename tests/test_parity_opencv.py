"""netdef.load computes what OpenCV 4.12's Caffe importer computes (DESIGN §6).

Every deploy-style corpus net (FCN test/val files become deploy nets), seeded
random weights written by netdef's writer in the current and the V1 format,
random inputs; every net output must agree to relative L2 <= 1e-4 in float32.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import netdef
from netdef.compiler.analysis import check_net
from netdef.compiler.weights import write_caffemodel

from .conftest import corpus_id
from .test_opencv_shapes import DEPLOY, FCN_EVAL, as_deploy, weight_shapes

cv2 = pytest.importorskip("cv2")

FULL_SIZE = {"voc-fcn8s", "voc-fcn16s", "voc-fcn32s", "voc-fcn-alexnet"}  # at 500 x 500


def scaled_weights(net, seed: int = 0, v1: bool = False) -> bytes:
    """Weights with std 1/sqrt(fan-in), biases 0.1: signals neither vanish nor explode."""
    rng = np.random.default_rng(seed)
    layers = []
    all_shapes = weight_shapes(net)
    for layer in net.layers:
        shapes = all_shapes.get(layer.index, [])
        blobs = [(rng.standard_normal(shape) / np.sqrt(max(np.prod(shape[1:]), 1)) if i == 0
                  else 0.1 * rng.standard_normal(shape)).astype(np.float32)
                 for i, shape in enumerate(shapes)]
        if blobs:
            layers.append((layer.name, layer.type, blobs))
    out = io.BytesIO()
    write_caffemodel(out, layers, v1=v1)
    return out.getvalue()


def relative_l2(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.linalg.norm(ours - theirs) / max(np.linalg.norm(theirs), 1e-30))


def compare(text: str, tmp_path, v1: bool = False, engine=None) -> dict[str, float]:
    """Each output's relative L2 error against OpenCV: the faithful module's, or with
    `engine`, netdef.fast's on that engine (of the optimized module)."""
    net, problems = check_net(text)
    assert not [p for p in problems if not p.warning]
    proto, model = tmp_path / "net.prototxt", tmp_path / "net.caffemodel"
    proto.write_text(text)
    model.write_bytes(scaled_weights(net, v1=v1))
    rng = np.random.default_rng(1)
    feeds = {net.blobs[b].name: rng.standard_normal(net.blobs[b].shape).astype(np.float32)
             for b in net.input_blobs}
    module = netdef.load(proto, model, optimize=engine is not None)
    if engine is not None:
        module = netdef.fast(module, engine=engine)
    with torch.no_grad():
        ours = module(**{name: torch.from_numpy(value) for name, value in feeds.items()})
    assert getattr(module, "fallback", None) is None, "the engine handed the net to torch"
    cv_net = cv2.dnn.readNetFromCaffe(str(proto), str(model))
    for name, value in feeds.items():
        cv_net.setInput(value, name)
    producers = {net.blobs[b].name: net.layers[net.blobs[b].producer].name
                 for b in net.blobs if net.blobs[b].producer is not None}
    theirs = cv_net.forward([producers[name] for name in ours])
    errors = {}
    for (name, tensor), reference in zip(ours.items(), theirs):
        reference = reference.reshape(tensor.shape)
        assert reference.std() > 0, f"{name}: the reference output is constant; weak test"
        errors[name] = relative_l2(tensor.numpy(), reference)
    return errors


DEPLOY_NETS = [pytest.param(path.read_text, id=corpus_id(path)) for path in DEPLOY]
EVAL_NETS = [pytest.param(lambda p=path: as_deploy(p, 500 if p.parent.name in FULL_SIZE else 224),
                          id=corpus_id(path)) for path in FCN_EVAL]


@pytest.mark.slow
@pytest.mark.parametrize("make_text", DEPLOY_NETS + EVAL_NETS)
def test_outputs_match_opencv(make_text, tmp_path):
    errors = compare(make_text(), tmp_path)
    assert errors and max(errors.values()) <= 1e-4, errors


@pytest.mark.slow
@pytest.mark.parametrize("make_text", DEPLOY_NETS[:3])
def test_v1_weights_match_opencv(make_text, tmp_path):
    errors = compare(make_text(), tmp_path, v1=True)
    assert errors and max(errors.values()) <= 1e-4, errors
