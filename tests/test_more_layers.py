"""Dialect and less common layers against their definitions in numpy."""
from __future__ import annotations

import io

import numpy as np
import torch

import netdef
from netdef.compiler.weights import write_caffemodel

RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 3, 4, 6)).astype(np.float32)
INPUT = ('layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 '
         'dim: 4 dim: 6 } } }\n')


def run(body: str, weights=None, tmp_path=None, x=X):
    text = INPUT + body
    model = None
    if weights:
        model = tmp_path / "w.caffemodel"
        out = io.BytesIO()
        write_caffemodel(out, weights)
        model.write_bytes(out.getvalue())
    with torch.no_grad():
        return {k: v.numpy() for k, v in netdef.load(text, model)(data=torch.from_numpy(x)).items()}


def test_pspnet_bn_uses_its_four_blobs(tmp_path):
    scale, shift, mean = (RNG.standard_normal((1, 3, 1, 1)).astype(np.float32) for _ in range(3))
    variance = RNG.uniform(0.5, 2, (1, 3, 1, 1)).astype(np.float32)
    out = run('layer { name: "bn" type: "BN" bottom: "data" top: "bn" bn_param { eps: 0.001 } }',
              [("bn", "BN", [scale, shift, mean, variance])], tmp_path)["bn"]
    assert np.allclose(out, scale * (X - mean) / np.sqrt(variance + 0.001) + shift, atol=1e-5)


def test_segnet_upsample_returns_values_to_their_pooled_positions():
    body = ('layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" top: "mask" '
            'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
            'layer { name: "up" type: "Upsample" bottom: "pool" bottom: "mask" top: "up" '
            'upsample_param { scale: 2 } }\n')
    out = run(body)["up"]
    expected = np.zeros_like(X)
    for n in range(2):
        for c in range(3):
            for i in range(2):
                for j in range(3):
                    block = X[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                    a, b = np.unravel_index(block.argmax(), block.shape)
                    expected[n, c, 2 * i + a, 2 * j + b] = block.max()
    assert np.array_equal(out, expected)


def test_argmax_with_and_without_axis():
    out = run('layer { name: "a" type: "ArgMax" bottom: "data" top: "a" '
              'argmax_param { axis: 1 } }')["a"]
    assert np.array_equal(out, X.argmax(1)[:, None].astype(np.float32))
    out = run('layer { name: "a" type: "ArgMax" bottom: "data" top: "a" '
              'argmax_param { top_k: 2 out_max_val: true } }')["a"]
    flat = X.reshape(2, -1)
    order = np.argsort(-flat, 1)[:, :2]
    assert out.shape == (2, 2, 2)
    assert np.array_equal(out[:, 0], order.astype(np.float32))
    assert np.allclose(out[:, 1], np.take_along_axis(flat, order, 1))


def test_reduction_tile_embed(tmp_path):
    for op, f in (("SUM", lambda v: v.sum(-1)), ("ASUM", lambda v: np.abs(v).sum(-1)),
                  ("SUMSQ", lambda v: (v * v).sum(-1)), ("MEAN", lambda v: v.mean(-1))):
        out = run(f'layer {{ name: "r" type: "Reduction" bottom: "data" top: "r" '
                  f'reduction_param {{ operation: {op} axis: 1 coeff: 2 }} }}')["r"]
        assert np.allclose(out, 2 * f(X.reshape(2, -1)), rtol=1e-5), op
    out = run('layer { name: "t" type: "Tile" bottom: "data" top: "t" '
              'tile_param { axis: 2 tiles: 3 } }')["t"]
    assert np.array_equal(out, np.tile(X, (1, 1, 3, 1)))
    ids = RNG.integers(0, 5, (2, 3, 4, 6)).astype(np.float32)
    table, bias = RNG.standard_normal((5, 7)).astype(np.float32), RNG.standard_normal(7).astype(np.float32)
    out = run('layer { name: "e" type: "Embed" bottom: "data" top: "e" '
              'embed_param { input_dim: 5 num_output: 7 } }',
              [("e", "Embed", [table, bias])], tmp_path, x=ids)["e"]
    assert np.allclose(out, table[ids.astype(int)] + bias)


def test_im2col_parameter_batchreindex_filter(tmp_path):
    out = run('layer { name: "c" type: "Im2col" bottom: "data" top: "c" '
              'convolution_param { kernel_size: 3 pad: 1 stride: 2 } }')["c"]
    padded = np.pad(X, ((0, 0), (0, 0), (1, 1), (1, 1)))
    assert out.shape == (2, 27, 2, 3)
    # channel c * 9 + ky * 3 + kx at output (i, j) reads padded input (2i + ky, 2j + kx)
    assert np.isclose(out[1, 2 * 9 + 1 * 3 + 2, 1, 2], padded[1, 2, 2 + 1, 4 + 2])
    weight = RNG.standard_normal((3, 4)).astype(np.float32)
    out = run('layer { name: "p" type: "Parameter" top: "p" '
              'parameter_param { shape { dim: 3 dim: 4 } } }', [("p", "Parameter", [weight])],
              tmp_path)["p"]
    assert np.array_equal(out, weight)
    body = ('layer { name: "idx" type: "Input" top: "idx" input_param { shape { dim: 3 } } }\n'
            'layer { name: "r" type: "BatchReindex" bottom: "data" bottom: "idx" top: "r" }\n')
    module = netdef.load(INPUT + body)
    out = module(data=torch.from_numpy(X), idx=torch.tensor([1.0, 0.0, 1.0]))["r"].numpy()
    assert np.array_equal(out, X[[1, 0, 1]])


def test_python_layer_in_the_middle_is_never_imported():
    import sys

    # its tops become inputs the caller supplies; the user's module is never imported
    body = ('layer { name: "py" type: "Python" bottom: "data" top: "py" '
            'python_param { module: "evil_module_netdef_test" layer: "Boom" } }\n'
            'layer { name: "r" type: "ReLU" bottom: "py" top: "r" }\n')
    module = netdef.load(INPUT + body, inputs={"py": (1, 2)})
    out = module(data=torch.zeros(2, 3, 4, 6), py=torch.tensor([[-1.0, 2.0]]))["r"]
    assert out.tolist() == [[0.0, 2.0]]
    assert "evil_module_netdef_test" not in sys.modules


def test_batchnorm_training_accumulates_caffes_running_statistics():
    """Two TRAIN batches, then the blobs: s = f*s + 1, mean = f*mean + batch mean, variance =
    f*variance + m/(m-1) batch variance (Caffe's BatchNormLayer::Forward_cpu)."""
    text = INPUT + ('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" '
                    'batch_norm_param { moving_average_fraction: 0.9 eps: 0.001 } }')
    model = netdef.load(text, phase="TRAIN")
    f, m = 0.9, 2 * 4 * 6
    mean, variance, scale = np.zeros(3), np.zeros(3), 0.0
    bn = model.get_submodule("bn")  # without a caffemodel, every blob starts at 0 as in Caffe
    for step in range(2):
        x = RNG.standard_normal((2, 3, 4, 6)).astype(np.float32) * (step + 1) + step
        out = model(data=torch.from_numpy(x))["bn"].detach().numpy()
        batch_mean, batch_var = x.mean((0, 2, 3)), x.var((0, 2, 3))
        expected = (x - batch_mean[:, None, None]) / np.sqrt(batch_var[:, None, None] + 0.001)
        assert np.allclose(out, expected, atol=1e-4)
        scale, mean = f * scale + 1, f * mean + batch_mean
        variance = f * variance + m / (m - 1) * batch_var
    assert np.allclose(bn.scale_factor.numpy(), [scale])
    assert np.allclose(bn.mean.numpy(), mean, atol=1e-5)
    assert np.allclose(bn.variance.numpy(), variance, atol=1e-5)
    model.eval()  # the TEST behaviour: the accumulated statistics, divided by s
    out = model(data=torch.from_numpy(X))["bn"].detach().numpy()
    expected = (X - (mean / scale)[:, None, None]) / np.sqrt((variance / scale)[:, None, None]
                                                             + 0.001)
    assert np.allclose(out, expected, atol=1e-4)
