"""SSD's `Permute` layer (dialect (SSD): reorders the axes; unlisted axes follow in order).

Runs as `netdef.runtime.shape.Permute`. Tested by `tests/test_rules.py` (test_rule[Permute]),
and in `tests/test_forks.py`.
"""
from __future__ import annotations

from ._base import Issue, LayerRule, ShapeIssue, register
from ..modules import runtime

_P = ("permute_param",)


def axis_order(layer, ndim: int) -> tuple:
    """SSD's order: the listed axes, then the others in their order."""
    listed = tuple(layer.permute_param.order)
    for index, axis in enumerate(listed):
        if axis >= ndim:
            raise ShapeIssue(f"order {axis} is out of range for a {ndim}-axis blob",
                             _P + ("order", index))
    return listed + tuple(a for a in range(ndim) if a not in listed)


@register
class Permute(LayerRule):
    description = "dialect (SSD): reorders the axes; unlisted axes follow in order"
    family = "reshape"
    params = ("permute_param",)

    def check_params(self, layer):
        seen = set()
        for index, axis in enumerate(layer.permute_param.order):
            if axis in seen:
                yield Issue(f"axis {axis} is listed twice", _P + ("order", index))
            seen.add(axis)

    def top_shapes(self, layer, bottoms):
        shape = bottoms[0]
        return [tuple(shape[a] for a in axis_order(layer, len(shape)))]

    def spatial_map(self, layer, ctx):
        shape = ctx.bottoms[0].shape
        if shape is not None and axis_order(layer, len(shape))[2:] == tuple(range(2, len(shape))):
            return ctx.passthrough(1)
        return [ctx.ended()]  # positions moved off the spatial axes

    def summary(self, layer):
        return "order " + ",".join(str(a) for a in layer.permute_param.order)

    def lower(self, layer, ctx):
        return runtime("Permute", order=axis_order(layer, len(ctx.bottom_shapes[0])))
