"""An inference-only fast path for a loaded net: torch.compile with the weights frozen
into the graph (constant folding, oneDNN conv+ReLU fusion on CPU); on CUDA also bf16
weights, channels_last activations and CUDA graphs. The first call compiles (tens of
seconds on a small CPU); later calls with the same shapes reuse it."""
from __future__ import annotations

import copy

import torch


class FastNet:
    """`fast(**inputs)` -> {blob name: float32 tensor}, like the module it wraps."""

    def __init__(self, module: torch.nn.Module, *, bf16: bool | None = None):
        device = next(iter(module.parameters()), torch.empty(0)).device
        # Caffe names that are not identifiers ('im-data'): a deep copy loses load()'s own
        # renaming, so the wrapper applies it
        self.renames = dict(getattr(module, "caffe_input_names", {}))
        self.cuda = device.type == "cuda"
        self.dtype = torch.bfloat16 if (self.cuda if bf16 is None else bf16) else torch.float32
        if self.dtype != torch.float32 or self.cuda:  # leave the caller's module as it was
            module = copy.deepcopy(module).to(dtype=self.dtype)
        module = module.eval()
        if self.cuda:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self.compiled = torch.compile(module, mode="reduce-overhead" if self.cuda else None)

    def __call__(self, **inputs):
        prepared = {}
        for name, value in inputs.items():
            name = self.renames.get(name, name)
            if value.is_floating_point():
                value = value.to(self.dtype)
                if self.cuda and value.dim() == 4:
                    value = value.contiguous(memory_format=torch.channels_last)
            prepared[name] = value
        # freezing is read when a graph compiles (first call, new shapes): patch every call
        from torch._inductor import config
        with torch.no_grad(), config.patch(freezing=True):
            outputs = self.compiled(**prepared)
        return {name: value.float() if value.is_floating_point() else value
                for name, value in outputs.items()}


def fast(module: torch.nn.Module, *, bf16: bool | None = None) -> FastNet:
    """Wrap a module from netdef.load for fast inference (bf16 defaults to on for CUDA)."""
    return FastNet(module, bf16=bf16)
