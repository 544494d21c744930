"""What a rule's `lower` returns: a module described by its constructor, built later.

Rules stay free of torch imports (check, info and draw never load torch), and
the same description serves `netdef.load` (instantiate it) and `netdef
compile` (print it as a constructor call in model.py).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from netdef.errors import LoweringError


@dataclass(frozen=True)
class ModuleSpec:
    factory: str  # "torch.nn.Conv2d" or "netdef.runtime.Crop"
    kwargs: dict = field(default_factory=dict)
    blobs: tuple[str, ...] = ()  # the module's tensors in Caffe's blob order

    def build(self):
        module_name, _, name = self.factory.rpartition(".")
        return getattr(importlib.import_module(module_name), name)(**self.kwargs)


class LoweringIssue(Exception):
    """Raised by a rule that cannot lower this particular layer."""

    def __init__(self, message: str, field_path: tuple = ()):
        super().__init__(message)
        self.field_path = field_path
        self.kind = LoweringError


@dataclass
class LoweringContext:
    bottom_shapes: list
    top_shapes: list
    solution: dict
    training: bool = False


def torch_nn(name: str, blobs: tuple[str, ...] = (), **kwargs) -> ModuleSpec:
    return ModuleSpec(f"torch.nn.{name}", kwargs, blobs)


def runtime(name: str, blobs: tuple[str, ...] = (), **kwargs) -> ModuleSpec:
    return ModuleSpec(f"netdef.runtime.{name}", kwargs, blobs)
