"""Caffe's `MemoryData` layer (data handed in from memory by the caller).

A data layer: its tops are graph inputs. Tested by `tests/test_rules.py`
(test_rule[MemoryData]).
"""
from __future__ import annotations

from ._base import register
from ._data import DataRule, with_label

_FIELDS = ("batch_size", "channels", "height", "width")


@register
class MemoryData(DataRule):
    description = "data handed in from memory by the caller"
    tops = (2, 2)
    params = ("memory_data_param", "transform_param")

    def input_shapes(self, layer):
        param = layer.memory_data_param
        dims = tuple(getattr(param, name) for name in _FIELDS)
        return with_label(dims if all(dims) else None, param.batch_size, len(layer.top))
