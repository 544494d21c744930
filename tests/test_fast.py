"""netdef.fast with torch.compile (engine="inductor", CUDA's default) and `run --fast` with
AOTInductor packages: the compiled inference path computes what the eager module computes.
ONNX Runtime, the CPU default, is tested in test_onnxengine.py."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import netdef

NET = """
input: "data" input_shape { dim: 2 dim: 3 dim: 20 dim: 20 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 weight_filler { type: "msra" } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "score" type: "Convolution" bottom: "pool" top: "score"
  convolution_param { num_output: 4 kernel_size: 1 weight_filler { type: "xavier" } } }
layer { name: "up" type: "Deconvolution" bottom: "score" top: "up"
  convolution_param { num_output: 4 kernel_size: 4 stride: 2 bias_term: false
  weight_filler { type: "bilinear" } } }
layer { name: "crop" type: "Crop" bottom: "up" bottom: "data" top: "crop" }
layer { name: "prob" type: "Softmax" bottom: "crop" top: "prob" }
"""


@pytest.mark.slow
def test_fast_matches_eager_on_cpu():
    model = netdef.load(NET)
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        expected = model(data=x)["prob"]
    fast = netdef.fast(model, engine="inductor")
    for _ in range(2):  # compiled once, reused
        out = fast(data=x)["prob"]
        assert out.dtype == torch.float32 and out.shape == (2, 4, 20, 20)
        assert torch.allclose(out, expected, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fast_bf16_on_cuda_is_close():
    model = netdef.load(NET, device="cuda")
    x = torch.randn(2, 3, 20, 20, device="cuda")
    with torch.no_grad():
        expected = model(data=x)["prob"]
    out = netdef.fast(model)(data=x)["prob"]
    assert out.dtype == torch.float32
    assert (out - expected).abs().max() < 2e-2  # bf16


@pytest.mark.slow
def test_run_fast_compiles_once_and_reuses_the_package(tmp_path, monkeypatch, cli):
    """run --fast: the first run compiles an AOTInductor package into the cache, the second
    loads it; both give the eager module's outputs. Another net gets its own package."""
    monkeypatch.setenv("NETDEF_CACHE", str(tmp_path / "cache"))
    net = tmp_path / "tiny.prototxt"
    net.write_text('input: "data" input_shape { dim: 1 dim: 3 dim: 16 dim: 16 }\n'
                   'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                   'convolution_param { num_output: 4 kernel_size: 3 '
                   'weight_filler { type: "gaussian" } } }\n'
                   'layer { name: "r" type: "ReLU" bottom: "c" top: "c" }\n')
    x = np.random.default_rng(0).random((1, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    common = ["run", net, "--input", f"data={tmp_path / 'x.npy'}"]
    fast = ["--fast", "--engine", "inductor"]
    code, _, err = cli(*common, *fast, "--out", tmp_path / "first.npz")
    assert code == 0 and "fast: compiled" in err, err
    code, _, err = cli(*common, *fast, "--out", tmp_path / "second.npz")
    assert code == 0 and "fast: using the compiled package" in err, err
    assert cli(*common, "--out", tmp_path / "eager.npz")[0] == 0
    eager = np.load(tmp_path / "eager.npz")["c"]
    for name in ("first", "second"):
        assert np.allclose(np.load(tmp_path / f"{name}.npz")["c"], eager, atol=1e-5), name
    packages = list((tmp_path / "cache" / "compiled").glob("*/model_aoti.pt2"))
    assert len(packages) == 1
    assert json.loads(packages[0].with_name("loads.json").read_text())["loads"] is True
    net.write_text(net.read_text().replace("num_output: 4", "num_output: 5"))
    code, _, err = cli(*common, *fast, "--out", tmp_path / "other.npz")
    assert code == 0 and "fast: compiled" in err
    assert len(list((tmp_path / "cache" / "compiled").glob("*/model_aoti.pt2"))) == 2


def test_fast_can_be_called_again():
    """netdef.fast stays the function after its module is imported (it once shadowed it)."""
    import netdef.fastpath  # noqa: F401

    assert callable(netdef.fast)
    model = netdef.load(NET)
    assert netdef.fast(model) is not None and callable(netdef.fast)


def test_a_package_that_does_not_load_is_found_out_in_a_child_process(tmp_path):
    """package_loads tries the loader in a child process (a crashing loader takes only the
    child down) and keeps the answer beside the package."""
    from netdef.fastpath import package_loads

    package = tmp_path / "model_aoti.pt2"
    package.write_bytes(b"not a package")
    assert package_loads(package) is False
    record = json.loads((tmp_path / "loads.json").read_text())
    assert record["loads"] is False and record["returncode"] != 0 and record["stderr"]
    package.unlink()  # the answer is read back, not tried again
    assert package_loads(package) is False


def test_a_package_whose_loading_hangs_counts_as_not_loading(tmp_path, monkeypatch):
    import subprocess

    from netdef import fastpath

    def hang(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], kwargs.get("timeout"))
    monkeypatch.setattr(fastpath.subprocess, "run", hang)
    assert fastpath.package_loads(tmp_path / "model_aoti.pt2") is False
    assert "over 600 s" in (tmp_path / "loads.json").read_text()


@pytest.mark.slow
def test_run_fast_falls_back_to_torch_compile_when_the_package_does_not_load(
        tmp_path, monkeypatch, cli):
    import netdef.fastpath

    monkeypatch.setattr(netdef.fastpath, "packaged",
                        lambda build, inputs, identity, fmt: (None, False, tmp_path / "p.pt2"))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((2, 3, 20, 20), np.float32))
    net = tmp_path / "net.prototxt"
    net.write_text(NET)
    common = ["run", net, "--input", f"data={tmp_path / 'x.npy'}"]
    code, _, err = cli(*common, "--fast", "--engine", "inductor", "--out", tmp_path / "fast.npz")
    assert code == 0 and "cannot load the compiled package" in err, err
    assert cli(*common, "--out", tmp_path / "eager.npz")[0] == 0
    assert np.allclose(np.load(tmp_path / "fast.npz")["prob"],
                       np.load(tmp_path / "eager.npz")["prob"], atol=1e-5)


def _compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


@pytest.mark.slow
def test_fast_compiles_an_optimized_net_as_one_graph_and_runs_one_thread_on_the_module(
        monkeypatch, two_threads):
    """optimize=True's fused convolutions step aside for the compiler without breaking the
    graph. When the thread chooser runs one thread in place of the caller's count, the loaded
    module runs (the graph's weights are packed for the caller's count), and nothing compiles
    again."""
    from torch._dynamo.utils import counters

    from netdef.fastpath import FastNet
    from netdef.runtime import threads

    chooser_says = {}
    monkeypatch.setattr(threads._State, "choose",
                        lambda self, requested: chooser_says.get("threads", requested))
    uncompiled, original = [], FastNet.uncompiled
    monkeypatch.setattr(FastNet, "uncompiled", lambda self, **blobs: uncompiled.append(
        torch.get_num_threads()) or original(self, **blobs))
    model = netdef.load(NET, optimize=True)
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        expected = model(data=x)["prob"]
    counters.clear()
    fast = netdef.fast(model, engine="inductor")
    compiled = fast(data=x)["prob"]
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert _compiled_graphs() == 1 and not uncompiled
    chooser_says["threads"] = 1
    on_one = fast(data=x)["prob"]
    assert uncompiled == [1] and _compiled_graphs() == 1
    for result in (compiled, on_one):
        assert torch.allclose(result, expected, atol=1e-5)


@pytest.mark.slow
def test_fast_compiles_every_net_of_a_process():
    """Each net's compiled forward is its own: torch.compile's limit of graphs per function
    (lowered here to 2) does not send a later net back to eager."""
    one_conv = ('input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
                'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                'convolution_param { num_output: %d kernel_size: 3 '
                'weight_filler { type: "gaussian" } } }')
    x = torch.randn(1, 3, 8, 8)
    with torch._dynamo.config.patch(recompile_limit=2):
        for outputs in (2, 3, 4):
            before = _compiled_graphs()
            netdef.fast(netdef.load(one_conv % outputs, optimize=True), engine="inductor")(
                data=x)
            assert _compiled_graphs() == before + 1, f"net {outputs} was not compiled"
