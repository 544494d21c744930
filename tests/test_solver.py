"""Caffe's update rules, checked against a float64 numpy transcription of its formulas.

The net is linear (two InnerProducts and a EuclideanLoss) so its gradients are
written by hand here too: nothing in the reference comes from torch.
"""
import math

import h5py
import numpy as np
import pytest
import torch

from netdef.errors import SolverError
from netdef.training.solver import learning_rate
from netdef.training.train import make_trainer, read_solver

NET = """
name: "tiny"
layer { name: "data" type: "HDF5Data" top: "x" top: "y"
        hdf5_data_param { source: "%(listing)s" batch_size: 4 } }
layer { name: "ip1" type: "InnerProduct" bottom: "x" top: "h"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "constant" value: 0.1 } } }
layer { name: "ip2" type: "InnerProduct" bottom: "h" top: "out"
        param { lr_mult: 0.5 decay_mult: 2 } param { lr_mult: 0 }
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "constant" value: 0.3 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "out" bottom: "y" top: "loss" }
"""

SOLVERS = {
    "SGD": "momentum: 0.9",
    "Nesterov": "momentum: 0.9",
    "AdaGrad": "momentum: 0",
    "RMSProp": "momentum: 0 rms_decay: 0.95",
    "AdaDelta": "momentum: 0.95 delta: 1e-6",
    "Adam": "momentum: 0.9 momentum2: 0.999 delta: 1e-8",
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((24, 5))
    y = rng.standard_normal((24, 2))
    with h5py.File(folder / "part.h5", "w") as handle:
        handle["x"], handle["y"] = x, y
    (folder / "list.txt").write_text(str(folder / "part.h5") + "\n")
    return folder, x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64)


def solver_text(folder, kind, extra="", base_lr=None):
    rate = base_lr if base_lr is not None else (1.0 if kind == "AdaDelta" else 0.05)
    net = NET % {"listing": folder / "list.txt"}
    return (f'net_param {{ {net} }}\ntype: "{kind}" {SOLVERS[kind]}\nbase_lr: {rate}\n'
            f'lr_policy: "step" gamma: 0.5 stepsize: 3\nweight_decay: 0.01\nmax_iter: 10\n'
            f'snapshot_after_train: false\n{extra}')


# ------------------------------------------------------------------ the reference
def gradients(params, x, y):
    """Hand-derived gradients of 1/(2N) sum (W2 (W1 x + b1) + b2 - y)^2."""
    w1, b1, w2, b2 = params
    h = x @ w1.T + b1
    out = h @ w2.T + b2
    d = (out - y) / len(x)
    dh = d @ w2
    return [dh.T @ x, dh.sum(0), d.T @ h, d.sum(0)]


def reference(kind, params, x, y, steps, *, base_lr, extra):
    """Caffe's SGDSolver family, transcribed in float64: lr multipliers (1, 2, 0.5, 0)
    and decay multipliers (1, 0, 2, -) as in NET."""
    lr_mult, decay_mult = [1, 2, 0.5, 0], [1, 0, 2, 1]
    momentum = {"SGD": 0.9, "Nesterov": 0.9, "AdaDelta": 0.95, "Adam": 0.9}.get(kind, 0.0)
    delta = {"AdaDelta": 1e-6}.get(kind, 1e-8)
    iter_size = extra.get("iter_size", 1)
    params = [p.copy() for p in params]
    history = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    for it in range(steps):
        rate = base_lr * 0.5 ** (it // 3)
        grads = [np.zeros_like(p) for p in params]
        for part in range(iter_size):
            start = ((it * iter_size + part) * 4) % 24
            for g, new in zip(grads, gradients(params, x[start:start + 4], y[start:start + 4])):
                g += new
        clip = extra.get("clip_gradients", -1)
        norm = math.sqrt(sum((g ** 2).sum() for i, g in enumerate(grads) if lr_mult[i]))
        if clip >= 0 and norm > clip:
            grads = [g * clip / norm for g in grads]
        for i, p in enumerate(params):
            if lr_mult[i] == 0:
                continue
            g = grads[i] / iter_size
            decay = 0.01 * decay_mult[i]
            g = g + decay * (np.sign(p) if extra.get("L1") else p)
            local = rate * lr_mult[i]
            if kind == "SGD":
                history[i] = momentum * history[i] + local * g
                update = history[i]
            elif kind == "Nesterov":
                old = history[i].copy()
                history[i] = momentum * history[i] + local * g
                update = (1 + momentum) * history[i] - momentum * old
            elif kind == "AdaGrad":
                history[i] = history[i] + g * g
                update = local * g / (np.sqrt(history[i]) + delta)
            elif kind == "RMSProp":
                history[i] = 0.95 * history[i] + 0.05 * g * g
                update = local * g / (np.sqrt(history[i]) + delta)
            elif kind == "AdaDelta":
                history[i] = momentum * history[i] + (1 - momentum) * g * g
                step = g * np.sqrt((second[i] + delta) / (history[i] + delta))
                second[i] = momentum * second[i] + (1 - momentum) * step * step
                update = local * step
            else:  # Adam
                history[i] = 0.9 * history[i] + 0.1 * g
                second[i] = 0.999 * second[i] + 0.001 * g * g
                t = it + 1
                correction = math.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
                update = local * correction * history[i] / (np.sqrt(second[i]) + delta)
            params[i] = p - update
    return params


def module_params(module):
    return [getattr(module.ip1, "weight"), module.ip1.bias, module.ip2.weight, module.ip2.bias]


def run_and_compare(dataset, kind, extra_text="", extra=None, steps=10):
    folder, x, y = dataset
    text = solver_text(folder, kind, extra_text)
    trainer = make_trainer(text, dtype=torch.float64, log=False)
    start = [p.detach().numpy().copy() for p in module_params(trainer.module)]
    trainer.run(steps)
    expected = reference(kind, start, x, y, steps, base_lr=read_solver(text).param.base_lr,
                         extra=extra or {})
    for name, got, want in zip(("W1", "b1", "W2", "b2"), module_params(trainer.module), expected):
        np.testing.assert_allclose(got.detach().numpy(), want, rtol=0, atol=1e-6, err_msg=name)
    moved = [np.abs(p.detach().numpy() - s).max() for p, s in zip(module_params(trainer.module),
                                                                     start)]
    assert min(moved[:3]) > 1e-3 and moved[3] == 0  # learned, except the frozen bias


@pytest.mark.parametrize("kind", list(SOLVERS))
def test_ten_steps_match_caffes_formulas(dataset, kind):
    run_and_compare(dataset, kind)


def test_iter_size_clipping_and_l1(dataset):
    run_and_compare(dataset, "SGD", "iter_size: 2\nclip_gradients: 0.5\n"
                    'regularization_type: "L1"\n',
                    {"iter_size": 2, "clip_gradients": 0.5, "L1": True})


def test_legacy_solver_type_enum(dataset):
    folder, *_ = dataset
    text = solver_text(folder, "SGD").replace('type: "SGD"', "solver_type: NESTEROV")
    assert make_trainer(text, log=False).solver.rule.type_name == "Nesterov"


@pytest.mark.parametrize("policy, settings, expected", [
    ("fixed", "", [0.1, 0.1, 0.1]),
    ("step", "gamma: 0.1 stepsize: 10", [0.1, 0.1, 0.01]),
    ("exp", "gamma: 0.9", [0.1, 0.1 * 0.9 ** 5, 0.1 * 0.9 ** 10]),
    ("inv", "gamma: 0.01 power: 0.75", [0.1, 0.1 * 1.05 ** -0.75, 0.1 * 1.1 ** -0.75]),
    ("multistep", "gamma: 0.5 stepvalue: 5 stepvalue: 8", [0.1, 0.05, 0.025]),
    ("poly", "power: 2 max_iter: 20", [0.1, 0.1 * 0.75 ** 2, 0.1 * 0.5 ** 2]),
    ("sigmoid", "gamma: -0.5 stepsize: 5", [0.1 / (1 + math.exp(-2.5)), 0.05,
                                             0.1 / (1 + math.exp(2.5))]),
])
def test_lr_policies(policy, settings, expected):
    param = read_solver(f'net: "x.prototxt"\nbase_lr: 0.1 lr_policy: "{policy}" {settings}').param
    got = [learning_rate(param, it) for it in (0, 5, 10)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_bad_solver_reports_every_problem():
    with pytest.raises(SolverError) as caught:
        read_solver('type: "Adamm"\nlr_policy: "stepp" iter_size: 0 regularization_type: "L3"')
    message = str(caught.value)
    for part in ("unknown solver type 'Adamm'", "lr_policy 'stepp'", "iter_size",
                 "regularization_type", "no net"):
        assert part in message
