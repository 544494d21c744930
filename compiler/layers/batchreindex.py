"""Caffe's `BatchReindex` layer (gathers items of bottom 0 at the indices in bottom 1).

Runs as `netdef.runtime.shape.BatchReindex`. Tested by `tests/test_rules.py`
(test_rule[BatchReindex]), and in `tests/test_more_layers.py`.
"""
from __future__ import annotations

from ._base import LayerRule, ShapeIssue, fmt, register
from ..modules import runtime


@register
class BatchReindex(LayerRule):
    description = "gathers items of bottom 0 at the indices in bottom 1"
    family = "reshape"
    bottoms = (2, 2)

    def top_shapes(self, layer, bottoms):
        data, indices = bottoms
        if len(indices) != 1:
            raise ShapeIssue(f"bottom 1 must be a 1-axis list of indices, got {fmt(indices)}",
                             ("bottom", 1))
        return [indices + data[1:]]

    def spatial_map(self, layer, ctx):
        return ctx.passthrough(1)  # it gathers whole items

    def lower(self, layer, ctx):
        return runtime("BatchReindex")
