"""`netdef train`: the loop around the solver, on one process and on two."""
import csv
import os
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import netdef
from netdef.training.train import make_trainer, train
from tests.conftest import ROOT

NET = """name: "small"
layer { name: "data" type: "HDF5Data" top: "data" top: "label"
        hdf5_data_param { source: "list.txt" batch_size: %(batch)d } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
        param { lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc"
        include { phase: TEST } }
"""

SOLVER = """net: "net%(batch)d.prototxt"
base_lr: 0.1
lr_policy: "step" gamma: 0.5 stepsize: 2
momentum: 0.9
weight_decay: 0.001
display: 1
max_iter: %(max_iter)d
snapshot_prefix: "out%(batch)d/snap"
%(extra)s
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with 32 random 2 x 6 x 6 items in HDF5 and the small net at batch 2 and 4."""
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "d.h5", "w") as handle:
        handle["data"] = rng.standard_normal((32, 2, 6, 6)).astype(np.float32)
        handle["label"] = rng.integers(0, 3, 32).astype(np.float32)
    (tmp_path / "list.txt").write_text("d.h5\n")
    for batch in (2, 4):
        (tmp_path / f"net{batch}.prototxt").write_text(NET % {"batch": batch})
        (tmp_path / f"out{batch}").mkdir()  # snapshot folders: netdef, like Caffe, makes none
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_solver(batch, max_iter=5, extra=""):
    path = f"solver{batch}.prototxt"
    with open(path, "w") as handle:
        handle.write(SOLVER % {"batch": batch, "max_iter": max_iter, "extra": extra})
    return path


def test_two_gloo_processes_equal_one_with_the_doubled_batch(workdir):
    write_solver(2)
    write_solver(4)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    two = subprocess.run([sys.executable, "-m", "netdef", "train", "solver2.prototxt",
                          "--nproc", "2", "--no-progress"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert two.returncode == 0, two.stderr
    train("solver4.prototxt", progress=False)
    one, both = load_file("out4/snap_iter_5.safetensors"), load_file("out2/snap_iter_5.safetensors")
    start = netdef.load("net4.prototxt", phase="TRAIN", inputs={"data": (4, 2, 6, 6), "label": (4,)})
    assert set(one) == set(both) == {"conv.0", "conv.1", "ip.0", "ip.1"}
    for key in one:
        np.testing.assert_allclose(both[key], one[key], rtol=0, atol=1e-5, err_msg=key)
    moved = np.abs(one["ip.0"] - start.ip.weight.detach().numpy()).max()
    assert moved > 1e-2  # five steps really moved the weights


def test_resume_continues_exactly(workdir):
    write_solver(4, max_iter=6, extra="snapshot: 3")
    whole = train("solver4.prototxt", progress=False)
    final = {k: v.copy() for k, v in load_file("out4/snap_iter_6.safetensors").items()}
    os.remove("out4/snap_iter_6.safetensors")
    resumed = train("solver4.prototxt", resume="out4/snap_iter_3.solverstate.safetensors",
                    progress=False)
    assert resumed.iteration == whole.iteration == 6
    again = load_file("out4/snap_iter_6.safetensors")
    for key in final:
        np.testing.assert_allclose(again[key], final[key], rtol=0, atol=1e-6, err_msg=key)


def test_test_net_shares_the_weights_and_logs_read_like_caffes(workdir):
    write_solver(4, max_iter=4, extra="test_iter: 2\ntest_interval: 3\n"
                 "test_initialization: false\nsnapshot: 3")
    trainer = train("solver4.prototxt", progress=False)
    test_module = trainer.test_nets[0].module
    assert test_module.ip.weight is trainer.module.ip.weight
    # the test at iteration 3 read items 0..7 with the weights snapshotted at iteration 3
    reference = netdef.load("net4.prototxt", "out4/snap_iter_3.safetensors",
                            inputs={"data": (4, 2, 6, 6), "label": (4,)})
    with h5py.File("d.h5") as handle:
        data, label = handle["data"][:8], handle["label"][:8]
    expected = np.mean([reference(data=torch.from_numpy(data[i:i + 4]),
                                  label=torch.from_numpy(label[i:i + 4]))["loss"].item()
                        for i in (0, 4)])
    with open("out4/snap_test.csv") as handle:
        rows = list(csv.DictReader(handle))
    logged = {row["output"]: float(row["value"]) for row in rows if row["iteration"] == "3"}
    assert logged["loss"] == pytest.approx(expected, rel=1e-5)
    with open("out4/snap_train.csv") as handle:
        rates = [float(row["lr"]) for row in csv.DictReader(handle)]
    assert rates == pytest.approx([0.1, 0.1, 0.05, 0.05])
    log = open("out4/snap.log").read()
    # the patterns Caffe's tools/extra/parse_log.py looks for
    assert re.search(r"^I\d{4} \d\d:\d\d:\d\d\.\d{6} .*Solving small", log, re.M)
    assert len(re.findall(r"Iteration (\d+), lr = ([-+]?[0-9]*\.?[0-9]+)", log)) == 4
    assert re.search(r"Train net output #0: loss = [\d.e+-]+ \(\* 1 = [\d.e+-]+ loss\)", log)
    assert re.search(r"Test net output #1: acc = [\d.e+-]+$", log, re.M)  # a metric: no weight


def test_shared_params_are_one_tensor_learning_from_both_uses(workdir):
    net = """name: "shared"
layer { name: "data" type: "HDF5Data" top: "data" top: "label"
        hdf5_data_param { source: "list.txt" batch_size: 4 } }
layer { name: "a" type: "InnerProduct" bottom: "data" top: "a" param { name: "w" }
        inner_product_param { num_output: 3 bias_term: false weight_filler { type: "xavier" } } }
layer { name: "b" type: "InnerProduct" bottom: "data" top: "b" param { name: "w" }
        inner_product_param { num_output: 3 bias_term: false weight_filler { type: "gaussian" } } }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "sum" bottom: "label" top: "loss" }
"""
    solver = f'net_param {{ {net} }}\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 1\n'
    trainer = make_trainer(solver, log=False)
    module = trainer.module
    assert module.a.weight is module.b.weight
    assert [item.name for item in trainer.solver.learnables] == ["a.0"]
    before = module.a.weight.detach().clone()
    with h5py.File("d.h5") as handle:
        x = torch.from_numpy(handle["data"][:4]).flatten(1)
        label = torch.from_numpy(handle["label"][:4]).long()
    weight = before.clone().requires_grad_()
    torch.nn.functional.cross_entropy(2 * x @ weight.T, label).backward()
    trainer.run()
    np.testing.assert_allclose(module.a.weight.detach(), before - 0.1 * weight.grad, atol=1e-6)


def test_shared_params_with_different_shapes_are_an_error(workdir):
    net = """name: "bad"
layer { name: "data" type: "HDF5Data" top: "data" top: "label"
        hdf5_data_param { source: "list.txt" batch_size: 4 } }
layer { name: "a" type: "InnerProduct" bottom: "data" top: "a" param { name: "w" }
        inner_product_param { num_output: 3 } }
layer { name: "b" type: "InnerProduct" bottom: "data" top: "b" param { name: "w" }
        inner_product_param { num_output: 4 } }
"""
    with pytest.raises(netdef.SolverError, match="layer 'b' .*shared param 'w' is"):
        make_trainer(f'net_param {{ {net} }}\nbase_lr: 0.1\nlr_policy: "fixed"\n', log=False)


def test_cli_errors_name_the_problem(workdir, cli):
    (workdir / "input.prototxt").write_text(
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
        'inner_product_param { num_output: 1 } }\n')
    (workdir / "python.prototxt").write_text(
        'layer { name: "in" type: "Python" top: "x" python_param { module: "mine" layer: "L" } }\n')
    for net, message in (("input.prototxt", "layer 'in' (Input): nothing feeds"),
                         ("python.prototxt", "only with --allow-python-layers")):
        (workdir / "s.prototxt").write_text(f'net: "{net}"\nbase_lr: 1\nlr_policy: "fixed"\n')
        code, out, err = cli("train", "s.prototxt")
        assert code == 1 and message in err and "Traceback" not in err
    (workdir / "s.prototxt").write_text('net: "input.prototxt"\nlr_policy: "fixd"\n')
    code, _, err = cli("train", "s.prototxt")
    assert code == 1 and "s.prototxt: lr_policy 'fixd' is not one of" in err


def test_ddp_hunts_unused_parameters_only_when_a_learnable_misses_the_loss(workdir):
    from netdef.training.train import all_reach_the_loss

    side = ('layer { name: "side" type: "InnerProduct" bottom: "data" top: "side" '
            'inner_product_param { num_output: 2 } }\n')
    for extra, expected in (("", True), (side, False)):
        (workdir / "n.prototxt").write_text(NET % {"batch": 4} + extra)
        trainer = make_trainer('net: "n.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\n', log=False)
        assert all_reach_the_loss(trainer.train_net, trainer.solver.learnables) is expected


def test_unknown_solver_fields_are_logged_not_fatal(workdir):
    write_solver(4, max_iter=1, extra="device_idd: 0")
    train("solver4.prototxt", progress=False)
    log = open("out4/snap.log").read()
    assert "solver4.prototxt:9: warning: unknown field 'device_idd' in SolverParameter" in log
    assert "did you mean 'device_id'" in log


def test_solver_warnings_are_glog_w_lines(workdir):
    write_solver(4, max_iter=1, extra="device_idd: 0")
    train("solver4.prototxt", progress=False)
    lines = [line for line in open("out4/snap.log") if "device_idd" in line]
    assert len(lines) == 1 and re.match(r"W\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ netdef\] ", lines[0])


def test_resume_truncates_the_curves_at_the_resumed_iteration(workdir):
    write_solver(4, max_iter=6, extra="snapshot: 3\ntest_iter: 1\ntest_interval: 2")
    train("solver4.prototxt", progress=False)
    train("solver4.prototxt", resume="out4/snap_iter_3.solverstate.safetensors", progress=False)
    for name in ("out4/snap_train.csv", "out4/snap_test.csv"):
        with open(name) as handle:
            iterations = [int(row["iteration"]) for row in csv.DictReader(handle)]
        assert iterations == sorted(iterations), name  # no zigzag back to iteration 3
    with open("out4/snap_train.csv") as handle:
        assert [int(r["iteration"]) for r in csv.DictReader(handle)] == list(range(6))


def test_no_progress_bar_when_stderr_is_not_a_terminal(workdir):
    """CI and log files get the glog lines, not carriage-return bars."""
    write_solver(4, max_iter=3)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "netdef", "train", "solver4.prototxt"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "\r" not in run.stderr and "Iteration 2" in run.stderr


def test_the_training_bar_shows_the_loss(workdir, monkeypatch):
    from netdef.compiler import progress

    monkeypatch.setattr(progress, "ALWAYS", True)
    write_solver(4, max_iter=3)
    import io
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    train("solver4.prototxt")
    assert re.search(r"loss=\d", stream.getvalue())
