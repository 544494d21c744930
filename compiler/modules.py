"""What a rule's `lower` returns: a module described by its constructor, built later.

Rules stay free of torch imports (check, info and draw never load torch), and
the same description serves `netdef.load` (instantiate it) and `netdef
compile` (print it as a constructor call in model.py).
"""
from __future__ import annotations

import importlib
import os
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
    base_dir: str | None = None  # the prototxt's folder, for files a layer names

    def find_file(self, name: str) -> str:
        """Caffe opens files relative to the working directory; a path relative to the
        prototxt is tried next."""
        if os.path.isabs(name) or os.path.exists(name) or self.base_dir is None:
            return name
        beside = os.path.join(self.base_dir, name)
        return beside if os.path.exists(beside) else name


def torch_nn(name: str, blobs: tuple[str, ...] = (), **kwargs) -> ModuleSpec:
    return ModuleSpec(f"torch.nn.{name}", kwargs, blobs)


def runtime(name: str, blobs: tuple[str, ...] = (), **kwargs) -> ModuleSpec:
    return ModuleSpec(f"netdef.runtime.{name}", kwargs, blobs)
