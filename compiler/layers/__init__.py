"""One LayerRule class per Caffe layer type, one module each; `registry()` finds them.

A rule holds everything netdef knows about its type: arity, parameter validation, the
shape rule, the coordinate map (receptive fields), the module it lowers to (a
`netdef.runtime` or torch.nn constructor), its fillers and learned-blob shapes. Passes ask the
rule; they never test `layer.type`. The shared algebra the rules use lives beside the passes:
`compiler/spatial.py` (coordinate maps), `compiler/window.py` (kernels, strides, pads) and
`compiler/modules.py` (what `lower` returns). The files starting with `_` are rule bases.
"""
from __future__ import annotations

import importlib
import pkgutil

from ._base import LayerRule, ShapeIssue, Issue, register, registered_rules

_loaded = False


def registry() -> dict[str, LayerRule]:
    """Every registered rule, keyed by its prototxt `type` string."""
    global _loaded
    if not _loaded:
        for module in pkgutil.iter_modules(__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{__name__}.{module.name}")
        _loaded = True
    return registered_rules()


__all__ = ["LayerRule", "ShapeIssue", "Issue", "register", "registry"]
