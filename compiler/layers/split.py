"""Caffe's `Split` layer (copies its bottom to every top (gradients are summed)).

Runs as `netdef.runtime.shape.Split`. Tested by `tests/test_rules.py` (test_rule[Split]), and in
`tests/test_crf.py`, `tests/test_crf_learned.py`, `tests/test_fuzz_cases.py`.
"""
from __future__ import annotations

from ._base import LayerRule, register
from ..modules import runtime


@register
class Split(LayerRule):
    description = "copies its bottom to every top (gradients are summed)"
    family = "reshape"
    tops = (1, None)

    def top_shapes(self, layer, bottoms):
        return [bottoms[0]] * len(layer.top)

    def spatial_map(self, layer, ctx):
        return ctx.passthrough(len(layer.top))

    def lower(self, layer, ctx):
        return runtime("Split", count=len(layer.top))
