"""Loss and accuracy layers against their definitions written out in numpy."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import netdef

from .conftest import ROOT

RNG = np.random.default_rng(0)


def net(layer: str, bottoms: dict[str, tuple]) -> str:
    inputs = "".join(
        f'layer {{ name: "in_{name}" type: "Input" top: "{name}" input_param {{ shape {{ '
        + " ".join(f"dim: {d}" for d in shape) + " } } }\n" for name, shape in bottoms.items())
    return inputs + layer


def run(layer: str, **arrays) -> dict:
    module = netdef.load(net(layer, {k: v.shape for k, v in arrays.items()}))
    with torch.no_grad():
        out = module(**{k: torch.from_numpy(v) for k, v in arrays.items()})
    return {k: v.numpy() for k, v in out.items()}


def log_softmax(x, axis=1):
    shifted = x - x.max(axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis, keepdims=True))


X = RNG.standard_normal((2, 4, 3, 3)).astype(np.float32)
LABEL = RNG.integers(0, 4, (2, 1, 3, 3)).astype(np.float32)
LABEL[0, 0, 0, :] = 255  # three ignored positions


@pytest.mark.parametrize("settings, divisor", [
    ("ignore_label: 255", 15),                               # VALID: 18 positions - 3 ignored
    ("ignore_label: 255 normalization: FULL", 18),
    ("ignore_label: 255 normalization: BATCH_SIZE", 2),
    ("ignore_label: 255 normalization: NONE", 1),
    ("ignore_label: 255 normalize: false", 2),               # legacy flag: BATCH_SIZE
])
def test_softmax_with_loss(settings, divisor):
    layer = ('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" '
             f'top: "loss" loss_param {{ {settings} }} }}')
    logp = log_softmax(X)
    label = LABEL[:, 0].astype(int)
    valid = label != 255
    picked = np.take_along_axis(logp, np.where(valid, label, 0)[:, None], 1)[:, 0]
    expected = -(picked * valid).sum() / divisor
    assert np.isclose(run(layer, x=X, label=LABEL)["loss"], expected, rtol=1e-5)


def test_accuracy_top_k_ignore_and_per_class():
    layer = ('layer { name: "acc" type: "Accuracy" bottom: "x" bottom: "label" top: "acc" '
             'top: "per_class" accuracy_param { top_k: 2 ignore_label: 255 } }')
    out = run(layer, x=X, label=LABEL)
    label = LABEL[:, 0].astype(int)
    valid = label != 255
    ranks = (X > np.take_along_axis(X, np.where(valid, label, 0)[:, None], 1)).sum(1)
    hits = (ranks < 2) & valid
    assert np.isclose(out["acc"], hits.sum() / valid.sum())
    for c in range(4):
        members = valid & (label == c)
        expected = hits[members].mean() if members.any() else 0.0
        assert np.isclose(out["per_class"][c], expected)


def test_sigmoid_cross_entropy_euclidean_multinomial():
    target = RNG.uniform(0, 1, (2, 4, 3, 3)).astype(np.float32)
    layer = 'layer { name: "l" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" top: "l" }'
    probability = 1 / (1 + np.exp(-X))
    bce = -(target * np.log(probability) + (1 - target) * np.log(1 - probability))
    assert np.isclose(run(layer, x=X, t=target)["l"], bce.sum() / X.size, rtol=1e-5)  # VALID
    layer = 'layer { name: "l" type: "EuclideanLoss" bottom: "x" bottom: "t" top: "l" }'
    assert np.isclose(run(layer, x=X, t=target)["l"], ((X - target) ** 2).sum() / 4, rtol=1e-5)
    prob = np.exp(log_softmax(X[:, :, 0, 0]))
    labels = np.array([2, 0], np.float32)
    layer = ('layer { name: "l" type: "MultinomialLogisticLoss" bottom: "p" bottom: "y" '
             'top: "l" }')
    expected = -np.log(prob[[0, 1], [2, 0]]).sum() / 2
    assert np.isclose(run(layer, p=prob.astype(np.float32), y=labels)["l"], expected, rtol=1e-5)


@pytest.mark.parametrize("norm, power", [("L1", 1), ("L2", 2)])
def test_hinge_loss(norm, power):
    scores = RNG.standard_normal((3, 5)).astype(np.float32)
    labels = np.array([4, 0, 2], np.float32)
    sign = -np.ones_like(scores)
    sign[np.arange(3), labels.astype(int)] = 1
    expected = (np.maximum(0, 1 - sign * scores) ** power).sum() / 3
    layer = ('layer { name: "l" type: "HingeLoss" bottom: "s" bottom: "y" top: "l" '
             f'hinge_loss_param {{ norm: {norm} }} }}')
    assert np.isclose(run(layer, s=scores, y=labels)["l"], expected, rtol=1e-5)


def test_infogain_loss_weights_log_softmax_by_the_label_row():
    infogain = RNG.uniform(0, 1, (1, 1, 4, 4)).astype(np.float32)
    label = RNG.integers(0, 4, (2, 1, 3, 3)).astype(np.float32)
    layer = ('layer { name: "l" type: "InfogainLoss" bottom: "x" bottom: "y" bottom: "h" '
             'top: "l" }')
    logp = log_softmax(X)
    rows = infogain[0, 0][label[:, 0].astype(int)]  # N x H x W x C
    expected = -(rows * np.moveaxis(logp, 1, -1)).sum() / 18
    assert np.isclose(run(layer, x=X, y=label, h=infogain)["l"], expected, rtol=1e-5)


@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive_loss(legacy):
    a, b = RNG.standard_normal((4, 3)).astype(np.float32), RNG.standard_normal((4, 3)).astype(np.float32)
    similar = np.array([1, 0, 0, 1], np.float32)
    d2 = ((a - b) ** 2).sum(1)
    apart = np.maximum(2 - d2, 0) if legacy else np.maximum(2 - np.sqrt(d2), 0) ** 2
    expected = (similar * d2 + (1 - similar) * apart).sum() / 8
    layer = ('layer { name: "l" type: "ContrastiveLoss" bottom: "a" bottom: "b" bottom: "s" '
             f'top: "l" contrastive_loss_param {{ margin: 2 legacy_version: {str(legacy).lower()} }} }}')
    assert np.isclose(run(layer, a=a, b=b, s=similar)["l"], expected, rtol=1e-5)


def test_fcn8s_train_net_loss_at_initialisation():
    # zero-initialised scorers give equal logits: each pixel costs log(21); normalize: false
    # divides by the batch size (1), so the loss is H * W * log(21)
    module = netdef.load(ROOT / "models" / "fcn8s.prototxt", phase="TRAIN",
                         inputs={"data": (1, 3, 32, 32), "label": (1, 1, 32, 32)})
    assert module.training
    out = module(data=torch.randn(1, 3, 32, 32), label=torch.randint(0, 21, (1, 1, 32, 32)).float())
    assert list(out) == ["loss"]
    assert np.isclose(out["loss"].item(), 32 * 32 * np.log(21), rtol=1e-5)


def test_infogain_matrix_from_a_binaryproto_beside_the_prototxt(tmp_path):
    from netdef.proto import netdef_pb2 as pb

    infogain = RNG.uniform(0, 1, (4, 4)).astype(np.float32)
    blob = pb.BlobProto(num=1, channels=1, height=4, width=4, data=infogain.ravel().tolist())
    (tmp_path / "H.binaryproto").write_bytes(blob.SerializeToString())
    label = RNG.integers(0, 4, (2, 1, 3, 3)).astype(np.float32)
    text = net('layer { name: "l" type: "InfogainLoss" bottom: "x" bottom: "y" top: "l" '
               'infogain_loss_param { source: "H.binaryproto" } }',
               {"x": X.shape, "y": label.shape})
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    loss = netdef.load(str(path))(x=torch.from_numpy(X), y=torch.from_numpy(label))["l"]
    rows = infogain[label[:, 0].astype(int)]
    expected = -(rows * np.moveaxis(log_softmax(X), 1, -1)).sum() / 18
    assert np.isclose(loss.item(), expected, rtol=1e-5)
    (tmp_path / "H.binaryproto").write_bytes(b"\x0a\xff")  # truncated
    with pytest.raises(netdef.LoweringError, match="is not a BlobProto"):
        netdef.load(str(path))
    (tmp_path / "H.binaryproto").unlink()
    with pytest.raises(netdef.LoweringError, match="cannot read the infogain matrix"):
        netdef.load(str(path))
