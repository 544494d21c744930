"""Inference optimisation of a lowered, bound TEST module: small passes over its fx graph that
leave the numbers as they were, up to float rounding.

- Identities go: Dropout in eval, Split (its tops are its bottom).
- A chain of per-channel affine layers (BatchNorm with stored statistics, Scale, Bias, BN) folds
  into the Convolution, Deconvolution or InnerProduct before it when that producer feeds nothing
  else; elsewhere the chain becomes one ChannelAffine op (two elementwise passes become one).
- Transposed convolutions with one group per channel (FCN's upsampling) become dense ones.
- A Conv2d and the ReLU that alone reads it become one ConvReLU (oneDNN's fused op on the CPU);
  every other Conv2d a PackedConv2d. Both keep oneDNN's packed copy of their weights.
- A ChannelAffine clips its own output when a plain ReLU alone reads it (DenseNet's
  pre-activations: one op instead of two).
- A Conv2d whose output a plain Eltwise sum alone reads becomes a ConvAdd that does the sum
  (ConvAddReLU with the ReLU after it): a ResNet block ends in one op instead of three.
- Convolutions of one kind and shape that read the same tensor (an inception block's 1x1
  reductions) become one, each reader taking its slice of the output channels.
- 4-D weights and image inputs go channels_last, which oneDNN's CPU convolutions run without
  reordering (nsfw's ResNet-50: 43 -> 29 ms at 2 threads on a 2-core machine).

Modules say what they are through a small protocol rather than by their Caffe type:
`channel_affine()` returns (scale, shift) per channel, or None. The faithful module stays what
`netdef.load` returns by default; training and weight export use it.
"""
from __future__ import annotations

import operator

import torch
from torch import fx, nn

from .modules import runtime

# Producers whose output channels can absorb a per-channel affine: (weight axis of the output
# channels, whether groups make that axis partial).
_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def optimize(module: fx.GraphModule) -> fx.GraphModule:
    """The module optimised in place for inference (eval mode), and returned."""
    if module.training:
        raise ValueError("optimize() is for TEST-phase (eval mode) modules")
    remove_identities(module)
    densified = densify_upsampling(module)  # first: a dense layer can absorb an affine after it
    # folded weights are no longer Caffe's blobs: `compile` marks its weights file so
    # (weights.OPTIMIZED), and nothing binds it to a faithful module by mistake
    rewritten = fold_channel_affines(module) + densified
    fuse_convolution_relu(module)  # after the folds: a folded chain leaves the two adjacent
    rewritten += fuse_affine_relu(module)  # a BatchNorm's blobs become a ChannelAffine's
    module.caffe_weights_rewritten = rewritten > 0
    fuse_residual_sums(module)  # after: a convolution that took its ReLU in sums nothing
    module.caffe_weights_rewritten |= merge_sibling_convolutions(module) > 0
    pack_convolutions(module)
    module.graph.eliminate_dead_code()
    module.graph.lint()
    module.recompile()
    module.delete_all_unused_submodules()
    module.to(memory_format=torch.channels_last)
    module.caffe_channels_last = True
    module.caffe_specs = {target: spec for target, spec in module.caffe_specs.items()
                          if isinstance(getattr(module, target, None), nn.Module)}
    module.caffe_optimized = True
    return module


# ------------------------------------------------------------------ identities
def remove_identities(module: fx.GraphModule) -> None:
    for node in list(module.graph.nodes):
        if node.op != "call_module" or not _is_identity(module.get_submodule(node.target)):
            continue
        source = node.args[0]
        for user in list(node.users):
            if user.op == "call_function" and user.target is operator.getitem:
                user.replace_all_uses_with(source)  # Split's k-th top is its bottom
                module.graph.erase_node(user)
        node.replace_all_uses_with(source)
        module.graph.erase_node(node)


def _is_identity(layer: nn.Module) -> bool:
    return (isinstance(layer, nn.Dropout) and not layer.training) or \
        type(layer).__name__ == "Split"


# ------------------------------------------------------------------ upsampling
# A transposed convolution with one group per channel (FCN's bilinear upsampling) runs on
# per-channel kernels that CUDA makes slow; written dense, with block-diagonal weights, it runs
# on tensor cores: FCN-8s in bf16 on an H200 went from 3.78 to 2.26 ms, and on 2 CPU cores it
# took 0.92 of the time (bench/results/2026-12-04-cuda-h200-graphs.txt, -upsampling-cpu.txt).
# It costs `channels` times the layer's FLOPs, so only layers this narrow are rewritten.
DENSE_UPSAMPLING_CHANNELS = 64


def densify_upsampling(module: fx.GraphModule) -> int:
    """Per-channel transposed convolutions become dense ones; returns how many."""
    rewritten = 0
    for target, spec in list(module.caffe_specs.items()):
        layer = getattr(module, target, None)
        if not (isinstance(layer, _TRANSPOSED) and 1 < layer.groups == layer.in_channels
                == layer.out_channels <= DENSE_UPSAMPLING_CHANNELS):
            continue
        dense_spec = type(spec)(spec.factory, {**spec.kwargs, "groups": 1}, spec.blobs)
        dense = dense_spec.build().to(layer.weight)
        with torch.no_grad():
            dense.weight.zero_()
            channels = torch.arange(layer.in_channels)
            dense.weight[channels, channels] = layer.weight[:, 0]
            if layer.bias is not None:
                dense.bias.copy_(layer.bias)
        setattr(module, target, dense)
        module.caffe_specs[target] = dense_spec
        rewritten += 1
    return rewritten


# ------------------------------------------------------------------ convolutions
def fuse_convolution_relu(module: fx.GraphModule) -> int:
    """A Conv2d whose one reader is a plain ReLU becomes a ConvReLU (the same tensors), and the
    ReLU goes; returns how many."""
    return _fuse_relus(module, lambda node: _rebuild_convolution(module, node.target, "ConvReLU"))


def fuse_affine_relu(module: fx.GraphModule) -> int:
    """A per-channel affine layer whose one reader is a plain ReLU becomes a ChannelAffine that
    clips its own output, and the ReLU goes; returns how many."""
    return _fuse_relus(module, lambda node: _clip_affine(module, node))


def _fuse_relus(module: fx.GraphModule, take_relu) -> int:
    """Each plain ReLU whose input only it reads goes where `take_relu(producer's node)` says
    the producer now does the ReLU itself."""
    fused = 0
    for node in list(module.graph.nodes):
        if not _is_plain_relu(module, node):
            continue
        source = node.args[0]
        if source.op != "call_module" or len(source.users) != 1 or not take_relu(source):
            continue
        node.replace_all_uses_with(source)
        module.graph.erase_node(node)
        fused += 1
    return fused


def fuse_residual_sums(module: fx.GraphModule) -> int:
    """A plain sum of two tensors, one of them read only there and a Conv2d's output, becomes a
    ConvAdd of that convolution, or a ConvAddReLU with the plain ReLU that alone reads the sum;
    the sum and the ReLU go. Returns how many."""
    fused = 0
    order = {node: number for number, node in enumerate(module.graph.nodes)}
    for node in list(module.graph.nodes):
        convolution = _summed_convolution(module, node, order)
        if convolution is None:
            continue
        (other,) = [arg for arg in node.args if arg is not convolution]
        relu = _only_relu_of(module, node)
        if not _rebuild_convolution(module, convolution.target,
                                    "ConvAddReLU" if relu else "ConvAdd"):
            continue
        with module.graph.inserting_before(node):
            sum_node = module.graph.call_module(convolution.target, (convolution.args[0], other))
        sum_node.meta.update(convolution.meta)  # model.py names the convolution's layer
        for gone in filter(None, (relu, node, convolution)):
            gone.replace_all_uses_with(sum_node)
            module.graph.erase_node(gone)
        fused += 1
    return fused


def _summed_convolution(module: fx.GraphModule, node: fx.Node, order: dict):
    """The stock Conv2d node that `node`, a plain sum of two tensors, alone reads, if any; of
    two, the later one, whose input then need not live on until the sum."""
    if node.op != "call_module" or len(node.args) != 2 or node.kwargs:
        return None
    plain_sum = getattr(module.get_submodule(node.target), "plain_sum", None)
    if plain_sum is None or not plain_sum() or node.args[0] is node.args[1]:
        return None
    convolutions = [arg for arg in node.args if arg.op == "call_module" and len(arg.users) == 1
                    and len(arg.args) == 1 and not arg.kwargs
                    and type(module.get_submodule(arg.target)) is nn.Conv2d]
    return max(convolutions, key=order.get, default=None)


def _only_relu_of(module: fx.GraphModule, node: fx.Node):
    """The plain ReLU node that alone reads `node`, if any."""
    users = list(node.users)
    return users[0] if len(users) == 1 and _is_plain_relu(module, users[0]) else None


def _is_plain_relu(module: fx.GraphModule, node: fx.Node) -> bool:
    return node.op == "call_module" and type(module.get_submodule(node.target)) is nn.ReLU


def merge_sibling_convolutions(module: fx.GraphModule) -> int:
    """Convolutions of one kind and shape (groups of one) that read the same tensor become one
    with their output channels stacked, and each reader takes its slice: one bigger op, not
    several small ones (GoogLeNet's inception blocks). Returns how many convolutions went."""
    merged, order = 0, {node: number for number, node in enumerate(module.graph.nodes)}
    for node in list(module.graph.nodes):
        kinds = {}
        for user in node.users:
            kinds.setdefault(_convolution_kind(module, user, node), []).append(user)
        for kind, siblings in kinds.items():
            if kind is not None and len(siblings) > 1:
                _stack_convolutions(module, sorted(siblings, key=order.get))
                merged += len(siblings) - 1
    return merged


def _convolution_kind(module: fx.GraphModule, node: fx.Node, source: fx.Node):
    """What a convolution at `node` that reads only `source` must share with another to merge
    with it (its class and every setting but the output channels), or None."""
    if node.op != "call_module" or node.args != (source,) or node.kwargs:
        return None
    layer = module.get_submodule(node.target)
    if not isinstance(layer, nn.Conv2d) or layer.groups != 1 or layer.padding_mode != "zeros":
        return None
    settings = dict(module.caffe_specs[node.target].kwargs, out_channels=None)
    return type(layer), layer.bias is None, layer.weight.dtype, repr(sorted(settings.items()))


def _stack_convolutions(module: fx.GraphModule, siblings: list) -> None:
    """The first sibling's layer becomes all of them; a split hands each reader its part."""
    layers = [module.get_submodule(node.target) for node in siblings]
    sizes = [layer.out_channels for layer in layers]
    first = siblings[0]  # in graph order: the first runs before the others
    spec = module.caffe_specs[first.target]
    spec = type(spec)(spec.factory, {**spec.kwargs, "out_channels": sum(sizes)}, spec.blobs)
    stacked = spec.build().to(layers[0].weight)
    with torch.no_grad():
        for name, tensor in stacked.named_parameters():
            tensor.copy_(torch.cat([getattr(layer, name) for layer in layers]))
    setattr(module, first.target, stacked)
    module.caffe_specs[first.target] = spec
    with module.graph.inserting_before(first):
        whole = module.graph.call_module(first.target, first.args)
        whole.meta.update(first.meta)
        split = module.graph.call_method("split", (whole, sizes, 1))
        parts = [module.graph.call_function(operator.getitem, (split, index))
                 for index in range(len(siblings))]
    for sibling, part in zip(siblings, parts):
        sibling.replace_all_uses_with(part)
        module.graph.erase_node(sibling)
        part._rename(sibling.name)  # .code keeps the Caffe layers' names
    whole._rename(f"{first.name}_stacked")


def pack_convolutions(module: fx.GraphModule) -> int:
    """Every other Conv2d becomes a PackedConv2d (oneDNN's weight layout kept between calls;
    ConvReLU packs too); returns how many."""
    return sum(_rebuild_convolution(module, target, "PackedConv2d")
               for target in list(module.caffe_specs))


def _rebuild_convolution(module: fx.GraphModule, target: str, name: str) -> bool:
    """The stock Conv2d at `target`, if it is one, rebuilt as netdef.runtime's `name` with the
    same tensors."""
    convolution = getattr(module, target, None)
    if type(convolution) is not nn.Conv2d or convolution.padding_mode != "zeros":
        return False
    spec = module.caffe_specs[target]
    spec = runtime(name, spec.blobs, **spec.kwargs)
    rebuilt = spec.build().to(convolution.weight)
    rebuilt.load_state_dict(convolution.state_dict())
    setattr(module, target, rebuilt)
    module.caffe_specs[target] = spec
    return True


# ------------------------------------------------------------------ affine chains
def fold_channel_affines(module: fx.GraphModule) -> int:
    """Returns how many affine layers were folded or merged away."""
    rewritten = 0
    for node in list(module.graph.nodes):  # a fold or merge only ever erases `node` itself
        affine = _affine_of(module, node)
        if affine is None:
            continue
        source = node.args[0]
        producer = module.get_submodule(source.target) if source.op == "call_module" else None
        if producer is not None and len(source.users) == 1 and _absorb(producer, *affine):
            _record_bias(module, source.target)
            node.replace_all_uses_with(source)
            module.graph.erase_node(node)
            rewritten += 1
        elif source.op == "call_module" and len(source.users) == 1 and \
                _affine_of(module, source) is not None:
            _merge_into(module, source, node, affine)
            rewritten += 1
    return rewritten


def _affine_of(module: fx.GraphModule, node: fx.Node):
    if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
        return None
    describe = getattr(module.get_submodule(node.target), "channel_affine", None)
    return describe() if describe is not None else None


def _merge_into(module: fx.GraphModule, first: fx.Node, second: fx.Node, affine) -> None:
    """first then second, both affine: first becomes one ChannelAffine doing both."""
    scale_a, shift_a = _affine_of(module, first)
    scale_b, shift_b = affine
    fused = _channel_affine(module, first.target, scale_a * scale_b, shift_a * scale_b + shift_b)
    setattr(module, first.target, fused)
    second.replace_all_uses_with(first)
    module.graph.erase_node(second)


def _clip_affine(module: fx.GraphModule, node: fx.Node) -> bool:
    """The per-channel affine layer at `node`, if it is one, rebuilt as a ChannelAffine that
    does the ReLU after it."""
    affine = _affine_of(module, node)
    if affine is None:
        return False
    setattr(module, node.target, _channel_affine(module, node.target, *affine, relu=True))
    return True


def _channel_affine(module: fx.GraphModule, target: str, scale, shift,
                    relu: bool = False) -> nn.Module:
    spec = runtime("ChannelAffine", channels=scale.numel(), **({"relu": True} if relu else {}))
    fused = spec.build().to(scale.device)
    fused.scale.copy_(scale.detach())
    fused.shift.copy_(shift.detach())
    module.caffe_specs[target] = spec
    return fused


@torch.no_grad()
def _absorb(producer: nn.Module, scale, shift) -> bool:
    """Fold y * scale + shift into the producer's weights and bias, if it can take them."""
    if isinstance(producer, _CONVOLUTIONS):
        view = (-1,) + (1,) * (producer.weight.dim() - 1)
        producer.weight.mul_(scale.view(view))
    elif isinstance(producer, _TRANSPOSED) and producer.groups == 1:
        view = (1, -1) + (1,) * (producer.weight.dim() - 2)
        producer.weight.mul_(scale.view(view))
    elif type(producer).__name__ == "InnerProduct" and producer.axis == 1:
        weight = producer.weight.t() if producer.transpose else producer.weight
        weight.mul_(scale.view(-1, 1))
    else:
        return False
    if producer.bias is None:
        producer.bias = nn.Parameter(torch.zeros_like(shift))
    producer.bias.mul_(scale).add_(shift)
    return True


def _record_bias(module: fx.GraphModule, target: str) -> None:
    """model.py rebuilds the producer with a bias now that it has one."""
    spec = module.caffe_specs.get(target)
    if spec is not None and spec.kwargs.get("bias") is False:
        module.caffe_specs[target] = type(spec)(spec.factory, {**spec.kwargs, "bias": True},
                                                spec.blobs)
