"""Caffe's `DummyData` layer (constant or random blobs of given shapes, from its fillers).

A data layer: its tops are graph inputs, fed in training by its data_source. Tested by
`tests/test_rules.py` (test_rule[DummyData]), and in `tests/test_architecture.py`,
`tests/test_data.py`, `tests/test_fuzz_cases.py`.
"""
from __future__ import annotations

from ._base import Issue, register
from ._data import DataRule

_P = ("dummy_data_param",)
_LEGACY = ("num", "channels", "height", "width")


@register
class DummyData(DataRule):
    description = "constant or random blobs of given shapes, from its fillers"
    tops = (1, None)
    params = ("dummy_data_param",)

    def check_params(self, layer):
        param = layer.dummy_data_param
        tops = len(layer.top)
        if param.shape and any(len(getattr(param, name)) for name in _LEGACY):
            yield Issue("give shape or num/channels/height/width, not both", _P + ("shape", 0))
        for name in ("shape",) + _LEGACY + ("data_filler",):
            given = len(getattr(param, name))
            if given not in (0, 1, tops):
                yield Issue(f"{given} {name} values for {tops} tops; give one or one per top",
                            _P + (name, 0))

    def data_source(self, layer, ctx):
        from netdef.training.data import Dummy
        return Dummy(layer, ctx, self.input_shapes(layer))

    def input_shapes(self, layer):
        param = layer.dummy_data_param
        tops = len(layer.top)
        if param.shape:
            shapes = [tuple(shape.dim) for shape in param.shape]
        elif param.num:
            columns = [list(getattr(param, name)) for name in _LEGACY]
            if any(len(column) not in (1, tops) for column in columns):
                return [None] * tops
            shapes = [tuple(column[i if len(column) > 1 else 0] for column in columns)
                      for i in range(tops)]
        else:
            return [None] * tops
        if len(shapes) == 1:
            shapes = shapes * tops
        return shapes if len(shapes) == tops else [None] * tops
