"""The CRF-RNN layer: lattice against exact filters, mean-field against a numpy transcription
of Caffe's order of operations (reference-nets.md A3), gradients in float64."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import netdef
from netdef.compiler.weights import write_caffemodel
from netdef.runtime.crf import GaussianFilter, MultiStageMeanfield, pixel_grid

from .conftest import CORPUS

RNG = np.random.default_rng(21)


def _features(height, width, theta):
    return pixel_grid(height, width, torch.float64, "cpu") / theta


def _probabilities(pixels, classes=4, seed=0):
    values = torch.rand(pixels, classes, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(seed))
    return values / values.sum(1, keepdim=True)


# ------------------------------------------------------------------ filters
# twice the errors reference-nets.md A8 measured (24x24, C=4): 0.017, 0.006, 0.002
@pytest.mark.parametrize("theta,tolerance", [(1, 0.034), (3, 0.012), (10, 0.004)])
def test_lattice_spatial_messages_are_close_to_exact_on_64x64(theta, tolerance):
    features = _features(64, 64, theta)
    q = _probabilities(64 * 64)
    lattice, exact = GaussianFilter(features, "lattice"), GaussianFilter(features, "dense")
    assert (lattice(q) - exact(q)).abs().max() < tolerance
    ratio = (lattice.raw(q) / exact.raw(q)).mean()
    assert 0.8 < ratio < 0.92  # the raw lattice sum is ~0.85-0.88 of the Gaussian's


def _bilateral_error(image, q):
    height, width = image.shape[1:]
    grid = pixel_grid(height, width, torch.float64, "cpu")
    features = torch.cat([grid / 160, torch.from_numpy(image).reshape(3, -1).T / 3], 1)
    lattice, exact = GaussianFilter(features, "lattice"), GaussianFilter(features, "dense")
    return (lattice(q) - exact(q)).abs(), lattice


def test_lattice_bilateral_messages_on_random_colours():
    """A8's setting (24x24, theta 160 / 3, random colours: max 0.05, mean 4e-4), within 2x."""
    error, lattice = _bilateral_error(RNG.uniform(0, 255, (3, 24, 24)), _probabilities(24 * 24))
    assert error.max() < 0.1 and error.mean() < 8e-4
    ones = lattice.raw(torch.ones(24 * 24, 1, dtype=torch.float64))
    assert 0.3 < ones.min() < 0.5  # the lattice's self-weight is well below the exact >= 1


def test_lattice_bilateral_messages_on_a_64x64_scene():
    """A8 on a two-region image: max 0.13, mean 4e-3; here blocks of colour with noise."""
    _, image, _ = _scene(64, 64, 3, 5)
    error, _ = _bilateral_error(image, _probabilities(64 * 64))
    assert error.max() < 0.13 and error.mean() < 4e-3


def test_separable_spatial_filter_is_exact():
    features = _features(13, 17, 2.5)
    q = _probabilities(13 * 17)
    separable = GaussianFilter(features, "separable", grid=(13, 17), theta=2.5)
    assert torch.allclose(separable(q), GaussianFilter(features, "dense")(q), atol=1e-12)


def test_lattice_filter_is_linear_and_its_transpose_is_the_reverse_blur():
    """Autograd's vector-Jacobian product is the adjoint: <y, G x> = <G^T y, x>, and G itself
    is not symmetric (reference-nets.md A6)."""
    features = torch.cat([_features(9, 11, 2), torch.from_numpy(RNG.uniform(0, 3, (99, 3)))], 1)
    lattice = GaussianFilter(features, "lattice").lattice
    x = torch.randn(99, 2, dtype=torch.float64, requires_grad=True)
    y = torch.randn(99, 2, dtype=torch.float64)
    out = lattice.filter(x)
    (adjoint,) = torch.autograd.grad(out, x, y)
    assert torch.isclose((y * out).sum(), (adjoint * x).sum(), rtol=1e-10)
    dense = torch.stack([lattice.filter(torch.eye(99, dtype=torch.float64)[:, [i]])[:, 0]
                         for i in range(99)], 1)
    assert not torch.allclose(dense, dense.T, atol=1e-6)
    assert torch.allclose(2 * lattice.filter(x) + lattice.filter(y), lattice.filter(2 * x + y))


# ------------------------------------------------------------------ mean-field
def _softmax(z, axis=0):
    e = np.exp(z - z.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def meanfield_reference(unary, first, image, iterations, alpha, beta, gamma, ws, wb, mu):
    """Caffe's MultiStageMeanfield with exact Gaussian sums, one image (C x H x W), float64."""
    classes, height, width = unary.shape
    ys, xs = np.mgrid[:height, :width]
    position = np.stack([xs.ravel(), ys.ravel()], 1).astype(float)
    colour = image.reshape(3, -1).T.astype(float)
    distance = ((position[:, None] - position[None]) ** 2).sum(-1)
    colour_distance = ((colour[:, None] - colour[None]) ** 2).sum(-1)
    spatial = np.exp(-distance / (2 * gamma ** 2))
    bilateral = np.exp(-distance / (2 * alpha ** 2) - colour_distance / (2 * beta ** 2))
    spatial_norm = 1 / (spatial.sum(1) + 1e-20)
    bilateral_norm = 1 / (bilateral.sum(1) + 1e-20)
    u = unary.reshape(classes, -1)
    z = first.reshape(classes, -1)
    for _ in range(iterations):
        q = _softmax(z)
        s = (q @ spatial.T) * spatial_norm
        b = (q @ bilateral.T) * bilateral_norm
        z = u - mu @ (ws @ s + wb @ b)
    return z.reshape(classes, height, width)


def _scene(height, width, classes, seed):
    """Blocks of colour with noisy unaries that favour the right label only weakly."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((height, width), int)
    labels[:, width // 3:] = 1
    labels[height // 2:, 2 * width // 3:] = 2 % classes
    palette = rng.uniform(0, 255, (classes, 3))
    image = palette[labels].transpose(2, 0, 1) + rng.normal(0, 8, (3, height, width))
    unary = rng.normal(0, 1.0, (classes, height, width))
    unary[labels, np.arange(height)[:, None], np.arange(width)] += 0.6
    return unary, image, labels


def test_dense_backend_reproduces_caffes_order_of_operations():
    classes, height, width = 3, 12, 10
    unary, image, _ = _scene(height, width, classes, 1)
    first = unary + RNG.normal(0, 0.5, unary.shape)
    layer = MultiStageMeanfield(classes, 4, 5.0, 20.0, 3.0, [3.0] * classes, [5.0] * classes,
                                spatial_backend="dense", bilateral_backend="dense").double()
    with torch.no_grad():
        layer.spatial_weight.copy_(torch.from_numpy(RNG.normal(0, 1, (classes, classes))))
        layer.bilateral_weight.copy_(torch.from_numpy(RNG.normal(0, 1, (classes, classes))))
        layer.compatibility.copy_(torch.from_numpy(RNG.normal(0, 1, (classes, classes))))
        out = layer(*(torch.from_numpy(a)[None] for a in (unary, first, image)))[0]
    expected = meanfield_reference(unary, first, image, 4, 5.0, 20.0, 3.0,
                                   *(p.detach().numpy() for p in (layer.spatial_weight,
                                                                  layer.bilateral_weight,
                                                                  layer.compatibility)))
    assert np.allclose(out.numpy(), expected, atol=1e-10)


def test_lattice_meanfield_agrees_with_exact_on_a_scene():
    classes, height, width = 3, 48, 48
    unary, image, labels = _scene(height, width, classes, 2)
    args = [torch.from_numpy(a)[None].float() for a in (unary, unary, image)]
    outputs = {}
    for backend in ("lattice", "dense"):
        layer = MultiStageMeanfield(classes, 5, 20.0, 13.0, 3.0, [3.0] * classes,
                                    [5.0] * classes, spatial_backend=backend,
                                    bilateral_backend=backend)
        with torch.no_grad():
            outputs[backend] = layer(*args)[0].argmax(0).numpy()
    changed = (outputs["dense"] != unary.argmax(0)).mean()
    assert changed > 0.2  # the CRF does real work on this scene
    assert (outputs["lattice"] == outputs["dense"]).mean() > 0.95
    assert (outputs["dense"] == labels).mean() > (unary.argmax(0) == labels).mean()


@pytest.mark.parametrize("backend", ["lattice", "dense"])
def test_gradients_in_float64(backend):
    """Caffe's own test setting: N=2, C=3, 5x5, T=2, alpha 5, beta 2, gamma 3."""
    torch.manual_seed(0)
    layer = MultiStageMeanfield(3, 2, 5.0, 2.0, 3.0, [1.0] * 3, [1.0] * 3,
                                spatial_backend=backend, bilateral_backend=backend).double()
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    unary = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    first = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    image = torch.rand(2, 3, 5, 5, dtype=torch.float64) * 10
    names = [name for name, _ in layer.named_parameters()]
    assert names == ["spatial_weight", "bilateral_weight", "compatibility"]

    def run(u, q, *params):
        return torch.func.functional_call(layer, dict(zip(names, params)), (u, q, image))
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    # the lattice is rebuilt on every call: check a random projection of its Jacobian
    assert torch.autograd.gradcheck(run, (unary, first, *params), fast_mode=backend == "lattice")


# ------------------------------------------------------------------ through a prototxt
CRF_NET = """
input: "unary" input_shape {{ dim: 2 dim: {c} dim: 20 dim: 24 }}
input: "q0" input_shape {{ dim: 2 dim: {c} dim: 20 dim: 24 }}
input: "image" input_shape {{ dim: 2 dim: 3 dim: 20 dim: 24 }}
layer {{ name: "inference1" type: "MultiStageMeanfield" bottom: "unary" bottom: "q0"
  bottom: "image" top: "pred"
  multi_stage_meanfield_param {{ num_iterations: 3 theta_alpha: 20 theta_beta: 10 theta_gamma: 3
  {extra} }} }}
"""


def test_initialisation_is_the_intended_diagonal():
    text = CRF_NET.format(c=3, extra='spatial_filter_weights_str: "3 3 4" '
                                     'bilateral_filter_weights_str: "5 5 6"')
    layer = netdef.load(text).get_submodule("inference1")
    assert torch.equal(layer.spatial_weight, torch.diag(torch.tensor([3.0, 3.0, 4.0])))
    assert torch.equal(layer.bilateral_weight, torch.diag(torch.tensor([5.0, 5.0, 6.0])))
    assert torch.equal(layer.compatibility, -torch.eye(3))
    problems = netdef.check(CRF_NET.format(c=3, extra='spatial_filter_weights_str: "3 3"'))
    assert any("holds 2 numbers" in p.message for p in problems)


def test_caffemodel_blobs_load_by_layer_name_and_any_size_runs(tmp_path):
    blobs = [RNG.normal(0, 1, (1, 1, 4, 4)).astype(np.float32) for _ in range(3)]
    out = io.BytesIO()
    write_caffemodel(out, [("inference1", "MultiStageMeanfield", blobs)])
    (tmp_path / "crf.caffemodel").write_bytes(out.getvalue())
    model = netdef.load(CRF_NET.format(c=4, extra=""), tmp_path / "crf.caffemodel")
    layer = model.get_submodule("inference1")
    for name, blob in zip(("spatial_weight", "bilateral_weight", "compatibility"), blobs):
        assert np.array_equal(getattr(layer, name).detach().numpy(), blob[0, 0])
    with torch.no_grad():
        for shape in ((2, 4, 20, 24), (3, 4, 17, 9)):  # another batch and size per call
            unary = torch.randn(shape)
            image = torch.rand(shape[0], 3, *shape[2:]) * 255
            pred = model(unary=unary, q0=unary, image=image)["pred"]
            assert pred.shape == shape
            alone = layer(unary[1:2], unary[1:2], image[1:2])
            assert torch.allclose(pred[1:2], alone, atol=1e-5)  # images are independent


@pytest.mark.slow
def test_corpus_crfrnn_deploy_runs():
    path = CORPUS / "torrvision+crfasrnn" / "python-scripts" / "TVG_CRFRNN_new_deploy.prototxt"
    model = netdef.load(path, inputs={"data": (1, 3, 64, 64)})
    with torch.no_grad():
        pred = model(data=torch.rand(1, 3, 64, 64) * 255 - 120)["pred"]
    assert pred.shape == (1, 21, 64, 64) and torch.isfinite(pred).all()


def test_corpus_v1_coco_file_upgrades_and_lowers():
    path = CORPUS / "torrvision+crfasrnn" / "python-scripts" / "TVG_CRFRNN_COCO_VOC.prototxt"
    problems = netdef.check(path)
    assert all(p.warning for p in problems)
    model = netdef.load(path, inputs={"data": (1, 3, 48, 48)}, device="meta")
    layer = model.get_submodule("inference1")
    assert isinstance(layer, MultiStageMeanfield) and layer.compatibility.shape == (21, 21)


# ------------------------------------------------------------------ against pydensecrf2
def _hard_scene(height, width, classes, seed):
    """Four regions (one a disc) in noisy colours, unaries that favour the truth only a
    little: mean-field changes most labels, and exact and lattice filtering can differ."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((height, width), int)
    labels[:, width // 3:] = 1
    labels[height // 2:, 2 * width // 3:] = 2
    ys, xs = np.mgrid[:height, :width]
    labels[(ys - height / 3) ** 2 + (xs - width / 4) ** 2 < (min(height, width) / 6) ** 2] = 3
    palette = rng.uniform(0, 255, (classes, 3))
    image = np.clip(palette[labels] + rng.normal(0, 25, (height, width, 3)), 0, 255)
    unary = rng.normal(0, 1.0, (classes, height, width)).astype(np.float32)
    unary[labels, ys, xs] += 0.35
    return unary, image.astype(np.uint8), labels


def _densecrf(unary, image, iterations, alpha, beta, gamma, spatial, bilateral):
    """Kraehenbuehl's dense CRF set up as Caffe's model: energies -U (so its first Q is
    softmax(U) = Caffe's with Q0 = U), Potts compatibilities equal to the kernel weights
    (its Potts message is -w K Q, subtracted: + w K Q, Caffe's with Mu = -I), NORMALIZE_AFTER
    (divide by the filtered ones, as Caffe), the same Gaussian features."""
    import pydensecrf.densecrf as dcrf  # a test dependency: never skipped
    classes, height, width = unary.shape
    crf = dcrf.DenseCRF2D(width, height, classes)
    crf.setUnaryEnergy(np.ascontiguousarray(-unary.reshape(classes, -1)))
    crf.addPairwiseGaussian(sxy=gamma, compat=spatial, kernel=dcrf.DIAG_KERNEL,
                            normalization=dcrf.NORMALIZE_AFTER)
    crf.addPairwiseBilateral(sxy=alpha, srgb=beta, rgbim=np.ascontiguousarray(image),
                             compat=bilateral, kernel=dcrf.DIAG_KERNEL,
                             normalization=dcrf.NORMALIZE_AFTER)
    return np.array(crf.inference(iterations)).reshape(classes, height, width).argmax(0)


@pytest.mark.parametrize("height,width", [(48, 48), (64, 64), (96, 72)])
def test_prototxt_crf_agrees_with_pydensecrf2_and_exact_mean_field(height, width):
    classes, iterations, alpha, beta, gamma = 4, 5, 20.0, 13.0, 3.0
    unary, image, _ = _hard_scene(height, width, classes, height)
    text = f"""
input: "unary" input_shape {{ dim: 1 dim: {classes} dim: {height} dim: {width} }}
input: "image" input_shape {{ dim: 1 dim: 3 dim: {height} dim: {width} }}
layer {{ name: "split" type: "Split" bottom: "unary" top: "u" top: "q0" }}
layer {{ name: "crf" type: "MultiStageMeanfield" bottom: "u" bottom: "q0" bottom: "image"
  top: "pred" multi_stage_meanfield_param {{ num_iterations: {iterations}
  theta_alpha: {alpha} theta_beta: {beta} theta_gamma: {gamma}
  spatial_filter_weights_str: "3 3 3 3" bilateral_filter_weights_str: "5 5 5 5" }} }}
"""
    model = netdef.load(text)
    feeds = dict(unary=torch.from_numpy(unary)[None],
                 image=torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32))[None])
    with torch.no_grad():
        lattice = model(**feeds)["pred"][0].argmax(0).numpy()
    reference = _densecrf(unary, image, iterations, alpha, beta, gamma, 3.0, 5.0)
    exact = meanfield_reference(unary.astype(float), unary.astype(float),
                                image.transpose(2, 0, 1).astype(float), iterations, alpha, beta,
                                gamma, 3 * np.eye(classes), 5 * np.eye(classes),
                                -np.eye(classes)).argmax(0)
    assert (reference != unary.argmax(0)).mean() > 0.5  # the CRF changes most labels
    agreement = [(lattice == reference).mean(), (lattice == exact).mean()]
    assert min(agreement) >= 0.95 and max(agreement) >= 0.97
    assert (exact == reference).mean() >= 0.95  # the two references agree as A8/issue say
