"""Caffe's `Input` layer (declares net inputs and their shapes (legacy input/input_dim upgrade to
this)).

A data layer: its tops are graph inputs. Tested by `tests/test_rules.py` (test_rule[Input]), and
in `tests/compiler/layers/test_shape_rules.py`, `tests/compiler/layers/test_window_oracle.py`,
`tests/compiler/test_fillers.py`.
"""
from __future__ import annotations

from ._base import Issue, register
from ._data import DataRule
from netdef.errors import ShapeError

_P = ("input_param",)


@register
class Input(DataRule):
    description = "declares net inputs and their shapes (legacy input/input_dim upgrade to this)"
    tops = (1, None)
    params = ("input_param",)

    def check_params(self, layer):
        shapes = layer.input_param.shape
        if len(shapes) not in (0, 1, len(layer.top)):
            yield Issue(f"{len(shapes)} shapes for {len(layer.top)} tops; give one for all or one "
                        "per top", _P + ("shape", 0), ShapeError)
        for index, shape in enumerate(shapes):
            bad = [axis for axis, dim in enumerate(shape.dim) if dim <= 0]
            if bad:
                dims = ", ".join(str(d) for d in shape.dim)
                yield Issue(f"input dimensions must be positive, got ({dims})",
                            _P + ("shape", index, "dim", bad[0]), ShapeError)

    def input_shapes(self, layer):
        shapes = [tuple(shape.dim) for shape in layer.input_param.shape]
        if any(dim <= 0 for shape in shapes for dim in shape):
            return [None] * len(layer.top)
        if len(shapes) == 1:
            return shapes * len(layer.top)
        if len(shapes) == len(layer.top):
            return shapes
        return [None] * len(layer.top)
