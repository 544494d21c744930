"""Caffe's `Filter` layer (keeps the items whose selector (last bottom) is non-zero; batch size is
data-dependent).

Runs as `netdef.runtime.shape.Filter`. Tested by `tests/test_rules.py` (test_rule[Filter]).
"""
from __future__ import annotations

from ._base import LayerRule, ShapeIssue, count, register
from ..modules import runtime


@register
class Filter(LayerRule):
    description = "keeps the items whose selector (last bottom) is non-zero; batch size is data-dependent"
    family = "reshape"
    bottoms = (2, None)
    tops = (1, None)

    def top_shapes(self, layer, bottoms):
        *data, selector = bottoms
        if len(layer.top) != len(data):
            raise ShapeIssue(f"{len(data)} data bottoms need {len(data)} tops, found {len(layer.top)}")
        if count(selector) != selector[0]:
            raise ShapeIssue("the selector (last bottom) must hold one value per item")
        return [None] * len(data)  # the kept count is only known at run time

    def spatial_map(self, layer, ctx):
        return [ctx.merged(ctx.bottoms[:-1])] * len(layer.top)  # it selects whole items

    def lower(self, layer, ctx):
        return runtime("Filter")
