"""`netdef compile`: model.py runs in a fresh interpreter and equals netdef.load; pt2 exports match."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import netdef

from .conftest import ROOT
from .test_layer_zoo import ZOO, zoo_weights

RUNNER = """
import sys, numpy as np, torch
sys.path.insert(0, sys.argv[1])
import model
x = torch.from_numpy(np.load(sys.argv[2]))
out = model.load()(data=x)
np.savez(sys.argv[3], **{k: v.detach().numpy() for k, v in out.items()})
assert "netdef.compiler" not in sys.modules, "model.py must not need the compiler"
"""


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    weights = folder / "zoo.caffemodel"
    weights.write_bytes(zoo_weights(np.random.default_rng(3)))
    return weights


@pytest.mark.parametrize("optimized", [True, False])
def test_model_py_reproduces_load_exactly(cli, tmp_path, zoo, optimized):
    """compile optimizes by default (load(optimize=True), exactly); --no-optimize writes the
    faithful module (load(), exactly). Both agree with the faithful module."""
    out = tmp_path / "compiled"
    code, text, _ = cli("compile", ZOO, "--weights", zoo, "-o", out,
                        *([] if optimized else ["--no-optimize"]))
    assert code == 0 and "model.py" in text
    x = np.random.default_rng(0).standard_normal((2, 4, 9, 11)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    subprocess.run([sys.executable, "-c", RUNNER, str(out), str(tmp_path / "x.npy"),
                    str(tmp_path / "y.npz")], check=True, cwd=tmp_path)
    theirs = np.load(tmp_path / "y.npz")
    with torch.no_grad():
        ours = netdef.load(ZOO, zoo, optimize=optimized)(data=torch.from_numpy(x))
        faithful = netdef.load(ZOO, zoo)(data=torch.from_numpy(x))
    assert sorted(theirs.files) == sorted(ours)
    for name, value in ours.items():
        assert np.array_equal(theirs[name], value.numpy()), name
        scale = np.abs(faithful[name].numpy()).max()
        np.testing.assert_allclose(theirs[name], faithful[name].numpy(), rtol=0,
                                   atol=1e-5 * scale, err_msg=name)
    report = json.loads((out / "report.json").read_text())
    assert report["name"] == "zoo" and {"name", "shape", "producer", "rf"} <= set(report["blobs"][0])
    source = (out / "model.py").read_text()
    convolution = "netdef.runtime.PackedConv2d" if optimized else "torch.nn.Conv2d"
    assert f"{convolution}(in_channels=4, out_channels=6" in source
    assert "('lrn_within', 'LRN', " in source  # Caffe names and lines stay visible, as literals


def test_pt2_export_matches(cli, tmp_path):
    out = tmp_path / "compiled"
    model = ROOT / "models" / "fcn32s.prototxt"
    code, _, _ = cli("compile", model, "--input", "data=1,3,64,64", "--format", "pt2", "-o", out)
    assert code == 0
    program = torch.export.load(str(out / "model.pt2"))
    reference = netdef.load(model, inputs={"data": (1, 3, 64, 64)})
    for batch in (1, 3):  # one file, any batch
        x = torch.randn(batch, 3, 64, 64)
        expected = reference(data=x)["score"]
        assert torch.allclose(program.module()(data=x)["score"], expected, atol=1e-5)


def test_run_writes_outputs(cli, tmp_path, zoo):
    x = np.random.default_rng(0).standard_normal((2, 4, 9, 11)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, text, _ = cli("run", ZOO, "--weights", zoo, "--input", f"data={tmp_path / 'x.npy'}",
                        "--out", tmp_path / "y.npz")
    assert code == 0 and "softmax: 2x4x9x11" in text
    with torch.no_grad():
        expected = netdef.load(ZOO, zoo, optimize=True)(data=torch.from_numpy(x))  # run's default
    saved = np.load(tmp_path / "y.npz")
    assert all(np.array_equal(saved[k], v.numpy()) for k, v in expected.items())
    assert cli("run", ZOO, "--input", "data=x.png")[0] == 1  # unreadable input file: exit 1


def test_convert_names_tensors_by_layer_or_module(cli, tmp_path, zoo):
    from safetensors.numpy import load_file

    from netdef.compiler.weights import read_caffemodel

    assert cli("convert", zoo, "-o", tmp_path / "raw.safetensors")[0] == 0
    raw = load_file(str(tmp_path / "raw.safetensors"))
    layers = {layer.name: layer.blobs for layer in read_caffemodel(zoo)}
    assert set(raw) == {f"{name}.{i}" for name, blobs in layers.items() for i in range(len(blobs))}
    assert np.array_equal(raw["bn.2"], layers["bn"][2]) and raw["conv.0"].shape == (6, 2, 3, 3)
    assert cli("convert", zoo, "--net", ZOO, "-o", tmp_path / "named.safetensors")[0] == 0
    named = load_file(str(tmp_path / "named.safetensors"))
    assert np.array_equal(named["conv.weight"], layers["conv"][0])
    assert np.array_equal(named["bn.scale_factor"], layers["bn"][2])


def test_onnx_export_matches_reference_evaluator(cli, tmp_path, zoo):
    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    out = tmp_path / "compiled"
    assert cli("compile", ZOO, "--weights", zoo, "--format", "onnx", "-o", out)[0] == 0
    model = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(model)
    names = [output.name for output in model.graph.output]
    batch_axis = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_axis.dim_param == "batch"  # torch's current exporter, a dynamic batch
    reference = netdef.load(ZOO, zoo)
    for batch in (2, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 4, 9, 11)).astype(np.float32)
        with torch.no_grad():
            ours = reference(data=torch.from_numpy(x))
        assert names == list(ours)
        for name, value in zip(names, ReferenceEvaluator(model).run(None, {"data": x})):
            assert np.allclose(value, ours[name].numpy(), rtol=1e-4, atol=1e-5), (batch, name)


@pytest.mark.slow
def test_aoti_package_runs_any_batch(cli, tmp_path):
    """--format aoti: an AOTInductor package that loads at once and takes batch 1 and N."""
    text = tmp_path / "small.prototxt"
    text.write_text('input: "data" input_shape { dim: 1 dim: 3 dim: 16 dim: 16 }\n'
                    'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                    'convolution_param { num_output: 4 kernel_size: 3 '
                    'weight_filler { type: "gaussian" } } }\n'
                    'layer { name: "r" type: "ReLU" bottom: "c" top: "c" }\n'
                    'layer { name: "p" type: "Pooling" bottom: "c" top: "p" '
                    'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n')
    out = tmp_path / "compiled"
    code, text_out, err = cli("compile", text, "--format", "aoti", "-o", out)
    assert code == 0, err
    assert "model_aoti.pt2" in text_out and "fixed batch" not in err
    package = torch._inductor.aoti_load_package(str(out / "model_aoti.pt2"))
    reference = netdef.load(text)
    for batch in (1, 4):
        x = torch.randn(batch, 3, 16, 16)
        assert torch.allclose(package(data=x)["p"], reference(data=x)["p"], atol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error of a machine without CUDA")
def test_compile_for_a_missing_device_is_a_usage_error(cli, tmp_path):
    code, _, err = cli("compile", ZOO, "--format", "aoti", "--device", "cuda",
                       "-o", tmp_path / "out")
    assert code == 2 and "--device cuda: this machine has no CUDA device" in err, err
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_pt2_export_traces_with_inputs_in_the_module_precision(tmp_path):
    """A bf16 module exports with bf16 examples (the device follows its weights the same way)
    and the program computes what the module does."""
    from netdef.compiler.codegen import export_program

    text = ('input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
            'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param '
            '{ num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" } } }\n'
            'layer { name: "r" type: "ReLU" bottom: "c" top: "c" }\n')
    module = netdef.load(text, dtype=torch.bfloat16, optimize=True)
    assert export_program(module, {"data": (1, 3, 8, 8)}, tmp_path, "pt2") == "model.pt2"
    program = torch.export.load(str(tmp_path / "model.pt2")).module()
    x = torch.randn(3, 3, 8, 8, dtype=torch.bfloat16)
    with torch.no_grad():
        expected, got = module(data=x), program(data=x)
    for name, value in expected.items():
        assert got[name].dtype == value.dtype
        torch.testing.assert_close(got[name], value)


def test_folded_weights_never_bind_to_the_faithful_module(cli, tmp_path, zoo):
    """Optimized weights (BatchNorm and Scale folded into convolutions) fit only their
    model.py: load, run and convert refuse them by name; --no-optimize weights bind."""
    code, _, _ = cli("compile", ZOO, "--weights", zoo, "-o", tmp_path / "fast")
    assert code == 0
    folded = tmp_path / "fast" / "weights.safetensors"
    with pytest.raises(netdef.WeightError, match="compile with --no-optimize"):
        netdef.load(ZOO, folded)
    code, _, err = cli("convert", folded, "--net", ZOO, "-o", tmp_path / "w.caffemodel")
    assert code == 1 and "fits only the model.py beside it" in err
    code, _, _ = cli("compile", ZOO, "--weights", zoo, "-o", tmp_path / "plain", "--no-optimize")
    assert code == 0
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 4, 9, 11)).astype(np.float32))
    with torch.no_grad():
        again = netdef.load(ZOO, tmp_path / "plain" / "weights.safetensors")(data=x)
        original = netdef.load(ZOO, zoo)(data=x)
    for name, value in original.items():
        assert torch.equal(again[name], value), name
