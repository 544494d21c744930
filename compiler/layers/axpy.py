"""SENet's `Axpy` layer (dialect (hujie-frank/SENet): a * x + y, a (N x C x 1 x 1) scaling
x's channels).

Runs as `netdef.runtime.shape.Axpy`. Tested by `tests/test_rules.py` (test_rule[Axpy]), and in
`tests/test_forks.py`.
"""
from __future__ import annotations

from ._base import LayerRule, ShapeIssue, count, fmt, register, require_same_shapes
from ..modules import runtime


@register
class Axpy(LayerRule):
    description = "dialect (hujie-frank/SENet): a * x + y, a (N x C x 1 x 1) scaling x's channels"
    family = "merge"
    bottoms = (3, 3)

    def top_shapes(self, layer, bottoms):
        scale, x, y = bottoms
        require_same_shapes([x, y], ("bottom 1", "bottom 2"))
        if len(x) < 2 or scale[:2] != x[:2] or count(scale, 2) != 1:
            raise ShapeIssue(f"bottom 0 must be {x[0] if x else 'N'} x {x[1] if len(x) > 1 else 'C'}"
                             f" (x 1 x 1), one factor per channel of bottom 1; got {fmt(scale)}",
                             ("bottom", 0))
        return [x]

    def spatial_map(self, layer, ctx):
        if ctx.bottoms[0].field:  # factors that come from an image: every position counts
            return [ctx.ended()]
        return [ctx.merged(ctx.bottoms[1:])]

    def lower(self, layer, ctx):
        return runtime("Axpy")
