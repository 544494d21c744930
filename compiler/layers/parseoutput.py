"""ParseNet's `ParseOutput` layer (dialect (ParseNet): the best class at each position
(N x 1 x H x W), and optionally its score).

Runs as `netdef.runtime.shape.ParseOutput`. Tested by `tests/test_rules.py`
(test_rule[ParseOutput]), and in `tests/test_forks.py`.
"""
from __future__ import annotations

from ._base import LayerRule, ShapeIssue, fmt, register
from ..modules import runtime


@register
class ParseOutput(LayerRule):
    description = "dialect (ParseNet): the best class at each position, and optionally its score"
    family = "reshape"
    tops = (1, 2)

    def top_shapes(self, layer, bottoms):
        shape = bottoms[0]
        if len(shape) != 4:
            raise ShapeIssue(f"ParseOutput takes N x C x H x W scores, got {fmt(shape)}")
        return [(shape[0], 1) + shape[2:]] * len(layer.top)

    def spatial_map(self, layer, ctx):
        return ctx.passthrough(len(layer.top))

    def lower(self, layer, ctx):
        return runtime("ParseOutput", with_score=len(layer.top) == 2)
