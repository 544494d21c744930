"""Layers with a learned matrix in Caffe's blob layout: InnerProduct (axis, transpose),
Embed, Im2col, Parameter; and optimize=True's convolutions (packed weights, fused ReLU or sum)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class InnerProduct(nn.Module):
    """Flattens from `axis`, then y = x W^T + b (W is N x K, or K x N when `transpose`)."""

    def __init__(self, axis: int, inputs: int, outputs: int, bias: bool, transpose: bool = False):
        super().__init__()
        self.axis, self.transpose = axis, transpose
        shape = (inputs, outputs) if transpose else (outputs, inputs)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.zeros(outputs)) if bias else None

    def forward(self, x):
        x = x.flatten(self.axis)
        weight = self.weight.t() if self.transpose else self.weight
        return F.linear(x, weight, self.bias)


class Embed(nn.Module):
    """Rows of W (input_dim x num_output, Caffe's layout) picked by integer-valued inputs."""

    def __init__(self, input_dim: int, num_output: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(input_dim, num_output))
        self.bias = nn.Parameter(torch.zeros(num_output)) if bias else None

    def forward(self, x):
        y = F.embedding(x.long(), self.weight)
        return y + self.bias if self.bias is not None else y


class Im2col(nn.Module):
    """Convolution windows unfolded into channels: C x kh x kw values per output position."""

    def __init__(self, kernel: tuple, stride: tuple, pad: tuple, dilation: tuple, out_size: tuple):
        super().__init__()
        self.kernel, self.stride, self.pad = tuple(kernel), tuple(stride), tuple(pad)
        self.dilation, self.out_size = tuple(dilation), tuple(out_size)

    def forward(self, x):
        columns = F.unfold(x, self.kernel, self.dilation, self.pad, self.stride)
        return columns.reshape(x.shape[0], -1, *self.out_size)


class Parameter(nn.Module):
    """A learned blob as the layer's output (Caffe's Parameter layer)."""

    def __init__(self, shape: tuple):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(shape))

    def forward(self):
        return self.weight


class PackedConv2d(nn.Conv2d):
    """A Conv2d that, on the CPU with no gradient to keep, runs on a copy of its weights that
    oneDNN has reordered once into its own blocked layout, for the input shape and thread count
    at hand. A stock Conv2d hands oneDNN the plain weights at every call: packed, the zoo's
    forwards take 0.75-0.95 of the time (bench/bench_fusion.py --packing). The copies follow
    the weight: an in-place change or a new tensor packs again. Elsewhere, and while torch
    traces the module, the stock op."""

    activation = "none"  # what oneDNN applies as it writes the output
    MAX_COPIES = 8  # per input shape and thread count; images of every size forget old ones

    def forward(self, x):
        if _fusable(x, self.weight):
            return torch.ops.mkldnn._convolution_pointwise(
                x, self._packed(x), self.bias, list(self.padding), list(self.stride),
                list(self.dilation), self.groups, self.activation, [], "")
        return self._stock(x)

    def _stock(self, x):
        return super().forward(x)

    def _packed(self, x) -> torch.Tensor:
        weight = self.weight
        # the layout oneDNN picks depends on the thread count: nsfw's forwards on one thread
        # (the thread chooser's fallback) took twice as long on copies packed for two
        key = (tuple(x.shape), torch.get_num_threads(), weight.dtype, weight.data_ptr(),
               weight._version)
        packs = self.__dict__.setdefault("_packs", _Packs())
        packed = packs.get(key)
        if packed is None:
            if len(packs) >= self.MAX_COPIES:
                packs.clear()
            packed = packs[key] = torch.ops.mkldnn._reorder_convolution_weight(
                weight.detach(), list(self.padding), list(self.stride), list(self.dilation),
                self.groups, list(x.shape))
        return packed


class _Packs(dict):
    """oneDNN's packed weights (opaque tensors that cannot be copied or saved): a copied or
    pickled module starts without them and packs again."""

    def __deepcopy__(self, memo):
        return _Packs()

    def __reduce__(self):
        return _Packs, ()


class ConvReLU(PackedConv2d):
    """A convolution and the ReLU after it (optimize=True's fusion). On the CPU, with no
    gradient to keep, oneDNN applies the ReLU as it writes the convolution's output: one op and
    one pass instead of two (the zoo 8% faster at 2 threads, bench/bench_fusion.py). Elsewhere,
    and while torch traces the module for export or compilation, the two stock ops."""

    activation = "relu"

    def _stock(self, x):
        return F.relu(super()._stock(x))


class ConvAdd(PackedConv2d):
    """A convolution whose output an Eltwise sum adds to `other` (a ResNet block's last
    convolution and its shortcut), optimize=True's fusion. On the CPU, with no gradient to
    keep, oneDNN adds `other` as it writes the convolution's output: one op and one pass over
    the output instead of two. Elsewhere, and while torch traces the module, the stock ops."""

    def forward(self, x, other):
        if _fusable(x, self.weight) and type(other) is torch.Tensor and other.dtype == x.dtype:
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x, other, self._packed(x), self.bias, list(self.padding), list(self.stride),
                list(self.dilation), self.groups, "add", None, _UNARY[self.activation], [], "")
        return self._then(self._stock(x) + other)

    def _then(self, y):  # the activation after the sum
        return y


class ConvAddReLU(ConvAdd):
    """ConvAdd and the ReLU that alone reads the sum, all in the one oneDNN op on the CPU."""

    activation = "relu"

    def _then(self, y):
        return F.relu(y)


_UNARY = {"none": None, "relu": "relu"}  # activation -> oneDNN's post-op after a binary one


_ONEDNN = torch.backends.mkldnn.is_available()


def _fusable(x, weight) -> bool:
    # torch.compile's tracer first: it cannot step into is_available() and would break the
    # graph at every convolution (netdef.fast of an optimized module)
    return (not torch.compiler.is_compiling() and _ONEDNN and type(x) is torch.Tensor
            and x.device.type == "cpu" and x.dtype == weight.dtype
            and x.dtype in (torch.float32, torch.bfloat16)
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)))
