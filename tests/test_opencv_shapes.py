"""netdef's shapes equal OpenCV 4.12's (an independent Caffe importer) for every blob.

Nets: the corpus's deploy files, plus each FCN test/val file turned into a
deploy net (its Python data layer replaced by an Input, its loss dropped).
Weights: random, seeded, written by netdef's caffemodel writer.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from google.protobuf import text_format

import netdef
from netdef.compiler.analysis import check_net
from netdef.compiler.weights import write_caffemodel
from netdef.proto import netdef_pb2 as pb

from .conftest import CORPUS, corpus_files, corpus_id

cv2 = pytest.importorskip("cv2")

DEPLOY = [f for f in corpus_files() if f.name in ("deploy.prototxt", "lenet.prototxt",
                                                  "cifar10_full.prototxt", "cifar10_quick.prototxt")]
FCN_EVAL = sorted((CORPUS / "shelhamer+fcn.berkeleyvision.org").glob("*/[tv][ea]*.prototxt"))
FCN_EVAL = [f for f in FCN_EVAL if f.name in ("test.prototxt", "val.prototxt")]
LABEL_TOPS = {"label", "sem", "geo"}


def as_deploy(path, side: int) -> str:
    """A TEST-phase copy of `path` whose Python data layer is an Input and that has no loss."""
    net = netdef.parse(path)
    deploy = pb.NetParameter(name=net.name)
    for layer in net.layer:
        if layer.type == "Python":
            tops = [top for top in layer.top if top not in LABEL_TOPS]
            inputs = deploy.layer.add(name=layer.name, type="Input", top=tops)
            for top in tops:
                inputs.input_param.shape.add(dim=[1, 1 if top == "depth" else 3, side, side])
        elif layer.type != "SoftmaxWithLoss":
            deploy.layer.add().CopyFrom(layer)
    return text_format.MessageToString(deploy)


WEIGHTED = ("Convolution", "Deconvolution", "InnerProduct", "Scale")  # what the tests fill


def weight_shapes(net) -> dict[int, list[tuple]]:
    """Layer index -> its learned blobs' shapes, as a meta-device build of the net has them,
    for the weighted types the parity tests fill (others keep OpenCV's and netdef's defaults)."""
    from netdef.compiler.bind import build_module

    module = build_module(net, device="meta")
    return {index: [tuple(getattr(module.get_submodule(target), name).shape) for name in names]
            for index, target, names in module.caffe_parameters
            if net.layers[index].type in WEIGHTED}


def random_weights(net, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    chunk = rng.standard_normal(1 << 16).astype(np.float32) * 0.01  # tiled: big nets stay fast
    layers = []
    shapes = weight_shapes(net)
    for layer in net.layers:
        blobs = [np.resize(chunk, shape) for shape in shapes.get(layer.index, [])]
        if blobs:
            layers.append((layer.name, layer.type, blobs))
    out = io.BytesIO()
    write_caffemodel(out, layers)
    return out.getvalue()


def compare_with_opencv(text: str, tmp_path):
    net, problems = check_net(text)
    assert not [p for p in problems if not p.warning]
    proto, model = tmp_path / "net.prototxt", tmp_path / "net.caffemodel"
    proto.write_text(text)
    model.write_bytes(random_weights(net))
    cv_net = cv2.dnn.readNetFromCaffe(str(proto), str(model))
    rng = np.random.default_rng(1)
    for blob_id in net.input_blobs:
        blob = net.blobs[blob_id]
        cv_net.setInput(rng.standard_normal(blob.shape).astype(np.float32), blob.name)
    names = [layer.name for layer in net.layers if layer.rule and not layer.rule.is_input]
    outputs = cv_net.forward(names)
    compared = 0
    for layer in net.layers:
        if layer.name not in names:
            continue
        ours = net.blobs[layer.tops[0]].shape
        theirs = tuple(outputs[names.index(layer.name)].shape)
        # OpenCV drops trailing 1-sized axes of InnerProduct outputs; compare element layout.
        assert ours == theirs or (int(np.prod(ours)) == int(np.prod(theirs)) and
                                  ours[:len(theirs)] == theirs), (layer.name, ours, theirs)
        compared += 1
    assert compared == len(names)


@pytest.mark.slow
@pytest.mark.parametrize("path", DEPLOY, ids=corpus_id)
def test_deploy_nets(path, tmp_path):
    compare_with_opencv(path.read_text(), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("path", FCN_EVAL, ids=corpus_id)
def test_fcn_eval_nets_as_deploy(path, tmp_path):
    compare_with_opencv(as_deploy(path, side=224), tmp_path)
