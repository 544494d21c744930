"""The shape of the code (issue 16): one checked net per entry point, no import of the public
API module from the compiler, and one naming of saved weights that every writer's output
loads back through."""
from __future__ import annotations

import ast
import shutil

import numpy as np
import pytest
import torch

import netdef
from netdef.compiler import analysis

from .conftest import ROOT
from .test_compile import ZOO, zoo  # noqa: F401  (the fixture: seeded caffemodel for ZOO)


@pytest.fixture
def checks(monkeypatch):
    """Counts check_net runs: each one builds the IR exactly once."""
    calls = []
    original = analysis.build_ir

    def counted(*args, **kwargs):
        calls.append(args[0].path)
        return original(*args, **kwargs)
    monkeypatch.setattr(analysis, "build_ir", counted)
    return calls


def test_one_check_per_load_compile_and_convert(checks, cli, tmp_path, zoo):  # noqa: F811
    netdef.load(ZOO, zoo)
    assert len(checks) == 1
    checks.clear()
    code, _, err = cli("compile", ZOO, "--weights", zoo, "-o", tmp_path / "out")
    assert code == 0, err
    assert len(checks) == 1
    checks.clear()
    assert cli("convert", zoo, "--net", ZOO, "-o", tmp_path / "w.safetensors")[0] == 0
    assert len(checks) == 1


def test_one_check_per_net_in_training(checks, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(
        'layer { name: "data" type: "DummyData" top: "data" top: "target" dummy_data_param { '
        'shape { dim: 1 dim: 1 dim: 4 dim: 4 } shape { dim: 1 dim: 2 dim: 4 dim: 4 } } }\n'
        'layer { name: "conv" type: "Convolution" bottom: "data" top: "out" '
        'convolution_param { num_output: 2 kernel_size: 1 } }\n'
        'layer { name: "loss" type: "EuclideanLoss" bottom: "out" bottom: "target" top: "loss" }')
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 1\n'
        'test_iter: 1\ntest_interval: 1\n')
    code, _, err = cli("train", "solver.prototxt", "--no-progress")
    assert code == 0, err
    assert len(checks) == 2  # the TRAIN net and its one TEST net, once each


def test_the_compiler_never_imports_the_public_api():
    allowed = ("netdef.errors", "netdef.proto", "netdef.training.data")
    for path in (ROOT / "compiler").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                if name == "netdef" or name.startswith("netdef."):
                    assert name.startswith(allowed), f"{path.name} imports {name}"


def bound_tensors(module) -> dict:
    return {key: value.clone() for key, value in module.state_dict().items()}


def test_every_weights_file_netdef_writes_loads_back(cli, tmp_path, zoo):  # noqa: F811
    reference = bound_tensors(netdef.load(ZOO, zoo))
    written = {}
    # the default compile folds BatchNorm into its weights, which then fit only its model.py
    # (test_compile: refused by name); --no-optimize writes the faithful module's
    assert cli("compile", ZOO, "--weights", zoo, "-o", tmp_path / "out", "--no-optimize")[0] == 0
    written["compile --no-optimize"] = tmp_path / "out" / "weights.safetensors"
    assert cli("convert", zoo, "-o", tmp_path / "raw.safetensors")[0] == 0
    written["convert"] = tmp_path / "raw.safetensors"
    assert cli("convert", zoo, "--net", ZOO, "-o", tmp_path / "named.safetensors")[0] == 0
    written["convert --net"] = tmp_path / "named.safetensors"
    for origin, path in written.items():
        module = netdef.load(ZOO, path)
        assert not module.caffe_unfilled_layers and not module.caffe_unused_layers, origin
        for key, value in bound_tensors(module).items():
            assert torch.equal(value, reference[key]), (origin, key)
        x = np.zeros((1, 4, 9, 11), np.float32)
        np.save(tmp_path / "x.npy", x)
        code, _, err = cli("run", ZOO, "--weights", path, "--input", f"data={tmp_path / 'x.npy'}",
                           "--out", tmp_path / "y.npz")
        assert code == 0 and "kept their fillers" not in err, (origin, err)


def test_training_snapshots_load_back(cli, tmp_path, monkeypatch):
    shutil.copytree(ROOT.parent / "shared" / "fuzz-cases" / "solver_snapshot_escape" / "sub",
                    tmp_path / "sub")
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("train", "sub/solver.prototxt", "--no-progress", "--snapshot-prefix",
                       "snap")
    assert code == 0, err
    module = netdef.load("sub/net.prototxt", "snap_iter_1.safetensors", phase="TRAIN")
    assert not module.caffe_unfilled_layers
    code, _, err = cli("compile", "sub/net.prototxt", "--phase", "TRAIN", "--weights",
                       "snap_iter_1.safetensors", "-o", "out")
    assert code == 0, err
