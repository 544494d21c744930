"""Schwing & Urtasun's parameterisation (reference-nets.md A7): learned kernel widths.
Checked against a numpy transcription of the model, float64 gradcheck for the widths, and
the lattice's width gradient against exact ones."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import netdef
from netdef.compiler.weights import write_caffemodel
from netdef.runtime.crf import LearnedKernelMeanfield, PermutohedralLattice, _WidthGradient, pixel_grid

from .test_crf import _scene, _softmax


def learned_reference(unary, image, iterations, weights, spatial_widths, bilateral_widths):
    """Z' = U + w_s (Ks Q - Q) + w_b (Kb Q - Q), exact anisotropic Gaussians, float64."""
    classes, height, width = unary.shape
    ys, xs = np.mgrid[:height, :width]
    position = np.stack([xs.ravel(), ys.ravel()], 1).astype(float)
    features = np.concatenate([position, image.reshape(3, -1).T], 1)

    def kernel(f, widths):
        scaled = f / np.asarray(widths)
        return np.exp(-0.5 * ((scaled[:, None] - scaled[None]) ** 2).sum(-1))
    spatial, bilateral = kernel(position, spatial_widths), kernel(features, bilateral_widths)
    u = unary.reshape(classes, -1)
    z = u
    for _ in range(iterations):
        q = _softmax(z)
        z = u + weights[0] * (q @ spatial.T - q) + weights[1] * (q @ bilateral.T - q)
    return z.reshape(classes, height, width)


def _layer(spatial="dense", bilateral="dense", iterations=3):
    return LearnedKernelMeanfield(iterations, [1.5, 2.5], [3.0, 2.0], [6.0, 5.0, 20.0, 25.0, 30.0],
                                  spatial_backend=spatial, bilateral_backend=bilateral).double()


@pytest.mark.parametrize("spatial", ["dense", "separable"])
def test_exact_backends_equal_the_numpy_model(spatial):
    unary, image, _ = _scene(9, 11, 3, 4)
    layer = _layer(spatial=spatial)
    with torch.no_grad():
        out = layer(*(torch.from_numpy(a)[None] for a in (unary, unary, image)))[0]
    expected = learned_reference(unary, image, 3, [1.5, 2.5], [3.0, 2.0],
                                 [6.0, 5.0, 20.0, 25.0, 30.0])
    assert np.allclose(out.numpy(), expected, atol=1e-10)


@pytest.mark.parametrize("spatial", ["dense", "separable"])
def test_gradcheck_for_the_kernel_widths_and_weights(spatial):
    unary, image, _ = _scene(5, 4, 3, 6)
    layer = _layer(spatial=spatial, iterations=2)
    names = [name for name, _ in layer.named_parameters()]
    assert names == ["weights", "spatial_width", "bilateral_width"]
    image_t = torch.from_numpy(image)[None]

    def run(u, *params):
        return torch.func.functional_call(layer, dict(zip(names, params)), (u, u, image_t))
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    unary_t = torch.from_numpy(unary)[None].requires_grad_()
    assert torch.autograd.gradcheck(run, (unary_t, *params))


class _DenseKernel:
    """An exact Gaussian as a matrix, with the lattice's run(values, reverse) interface."""

    def __init__(self, features, widths):
        scaled = features / widths
        self.matrix = torch.exp(-0.5 * torch.cdist(scaled, scaled) ** 2)

    def run(self, values, reverse=False):
        return (self.matrix.T if reverse else self.matrix) @ values


def test_width_gradient_identity_is_exact_for_an_exact_kernel():
    """The lattice's width gradient formula (A7), fed an exact kernel, equals autograd."""
    generator = torch.Generator().manual_seed(3)
    features = torch.rand(60, 5, dtype=torch.float64, generator=generator) * 40
    centred = features - features.mean(0)
    widths = torch.tensor([9.0, 7.0, 12.0, 15.0, 20.0], dtype=torch.float64, requires_grad=True)
    values = torch.rand(60, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    upstream = torch.rand(60, 4, dtype=torch.float64, generator=generator)

    out = _WidthGradient.apply(values, widths, _DenseKernel(centred, widths.detach()), centred)
    ours = torch.autograd.grad((out * upstream).sum(), (values, widths))
    exact = _DenseKernel(features, widths).matrix @ values  # differentiable in widths
    theirs = torch.autograd.grad((exact * upstream).sum(), (values, widths))
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_lattice_width_gradient_approximates_the_exact_one():
    """Through the whole model on a 32x32 scene (weights small enough that the unnormalised
    messages leave the softmax unsaturated): the lattice's gradient points where the exact
    one does, within the lattice's own approximation."""
    unary, image, labels = _scene(32, 32, 3, 8)
    grads = {}
    for backend in ("lattice", "dense"):
        layer = LearnedKernelMeanfield(3, [0.05, 0.02], [3.0, 3.0], [8.0, 8.0, 15.0, 15.0, 15.0],
                                       spatial_backend=backend, bilateral_backend=backend)
        layer = layer.double()
        out = layer(*(torch.from_numpy(a)[None] for a in (unary, unary, image)))
        loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(labels)[None])
        loss.backward()
        grads[backend] = torch.cat([layer.spatial_width.grad, layer.bilateral_width.grad])
    lattice, exact = grads["lattice"], grads["dense"]
    cosine = torch.nn.functional.cosine_similarity(lattice, exact, 0)
    assert cosine > 0.98, (lattice, exact)  # measured 0.997
    assert ((lattice - exact).norm() / exact.norm()) < 0.25  # measured 0.08


def test_lattice_width_gradient_on_a_lattice_with_bigger_values_is_finite():
    features = pixel_grid(20, 20, torch.float32, "cpu") * 10 + 1000  # far from the origin
    widths = torch.tensor([30.0, 30.0], requires_grad=True)
    centred = features - features.mean(0)
    lattice = PermutohedralLattice(centred / widths.detach())
    values = torch.rand(400, 2)
    out = _WidthGradient.apply(values, widths, lattice, centred)
    (grad,) = torch.autograd.grad(out.sum(), widths)
    assert torch.isfinite(grad).all() and (grad > 0).all()  # wider: every sum grows


LEARNED_NET = """
input: "unary" input_shape {{ dim: 1 dim: 3 dim: {h} dim: {w} }}
input: "image" input_shape {{ dim: 1 dim: 3 dim: {h} dim: {w} }}
layer {{ name: "split" type: "Split" bottom: "unary" top: "u" top: "q0" }}
layer {{ name: "crf" type: "MultiStageMeanfield" bottom: "u" bottom: "q0" bottom: "image"
  top: "pred" multi_stage_meanfield_param {{ num_iterations: 5 theta_alpha: 8
  theta_beta: 15 theta_gamma: 3 spatial_filter_weight: 0.05 bilateral_filter_weight: 0.02
  parameterization: LEARNED_KERNELS }} }}
"""


def test_prototxt_parameterization_loads_blobs_and_learns_widths(tmp_path):
    height, width = 24, 20
    text = LEARNED_NET.format(h=height, w=width)
    layer = netdef.load(text).get_submodule("crf")
    assert isinstance(layer, LearnedKernelMeanfield)
    assert layer.weights.tolist() == pytest.approx([0.05, 0.02])
    assert layer.spatial_width.tolist() == [3.0, 3.0]
    assert layer.bilateral_width.tolist() == [8.0, 8.0, 15.0, 15.0, 15.0]

    blobs = [np.array([0.5, 0.7], np.float32), np.array([2.0, 4.0], np.float32),
             np.array([9.0, 10.0, 11.0, 12.0, 13.0], np.float32)]
    out = io.BytesIO()
    write_caffemodel(out, [("crf", "MultiStageMeanfield", blobs)])
    (tmp_path / "crf.caffemodel").write_bytes(out.getvalue())
    model = netdef.load(text, tmp_path / "crf.caffemodel")
    loaded = model.get_submodule("crf")
    assert loaded.spatial_width.tolist() == [2.0, 4.0]
    assert loaded.bilateral_width.tolist() == [9.0, 10.0, 11.0, 12.0, 13.0]

    # learning: SGD on the widths and weights alone lowers the loss on a scene
    unary, image, labels = _scene(height, width, 3, 9)
    feeds = dict(unary=torch.from_numpy(unary).float()[None],
                 image=torch.from_numpy(image).float()[None])
    target = torch.from_numpy(labels)[None]
    model = netdef.load(text)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(**feeds)["pred"], target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
    assert (model.get_submodule("crf").bilateral_width.detach() != torch.tensor(
        [8.0, 8.0, 15.0, 15.0, 15.0])).all()


def test_per_class_weights_with_learned_kernels_draw_a_warning():
    text = LEARNED_NET.format(h=8, w=8).replace(
        "parameterization", 'spatial_filter_weights_str: "1 1 1" parameterization')
    problems = netdef.check(text)
    assert any("spatial_filter_weights_str is ignored" in str(p) for p in problems)


CRF_RUNNER = """
import sys, numpy as np, torch
sys.path.insert(0, sys.argv[1])
import model
feeds = dict(np.load(sys.argv[2]))
out = model.load()(**{k: torch.from_numpy(v) for k, v in feeds.items()})
np.save(sys.argv[3], out["pred"].detach().numpy())
assert "netdef.compiler" not in sys.modules, "model.py must not need the compiler"
"""


@pytest.mark.parametrize("parameterization", ["CAFFE", "LEARNED_KERNELS"])
def test_compiled_model_py_runs_both_crf_parameterizations(cli, tmp_path, parameterization):
    import subprocess
    import sys
    text = LEARNED_NET.format(h=12, w=10).replace("LEARNED_KERNELS", parameterization)
    (tmp_path / "crf.prototxt").write_text(text)
    code, _, _ = cli("compile", tmp_path / "crf.prototxt", "-o", tmp_path / "out")
    assert code == 0
    unary, image, _ = _scene(12, 10, 3, 2)
    feeds = dict(unary=unary[None].astype(np.float32), image=image[None].astype(np.float32))
    np.savez(tmp_path / "in.npz", **feeds)
    subprocess.run([sys.executable, "-c", CRF_RUNNER, str(tmp_path / "out"),
                    str(tmp_path / "in.npz"), str(tmp_path / "pred.npy")], check=True)
    with torch.no_grad():
        ours = netdef.load(text)(**{k: torch.from_numpy(v) for k, v in feeds.items()})["pred"]
    assert np.array_equal(np.load(tmp_path / "pred.npy"), ours.numpy())
