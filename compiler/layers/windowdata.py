"""Caffe's `WindowData` layer (R-CNN style: warped windows around proposals, with labels).

A data layer: its tops are graph inputs. Tested by `tests/test_rules.py`
(test_rule[WindowData]).
"""
from __future__ import annotations

from ._base import register
from ._data import DataRule, batch_issues, image_side, with_label


@register
class WindowData(DataRule):
    description = "R-CNN style: warped windows around proposals, with labels"
    tops = (2, 2)
    params = ("window_data_param", "transform_param")

    def check_params(self, layer):
        yield from batch_issues(layer.window_data_param.batch_size, ("window_data_param",))

    def input_shapes(self, layer):
        batch = layer.window_data_param.batch_size
        side = image_side(layer)
        return with_label((batch, 3) + side if side else None, batch, len(layer.top))
