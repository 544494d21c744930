from __future__ import annotations

from ._base import LayerRule, canonical_axis, register


@register
class Reduction(LayerRule):
    type_name = "Reduction"
    description = "SUM, ASUM, SUMSQ or MEAN over axis and every axis after it"
    family = "reshape"
    params = ("reduction_param",)

    def top_shapes(self, layer, bottoms):
        axis = canonical_axis(layer.reduction_param.axis, len(bottoms[0]),
                              ("reduction_param", "axis"))
        return [bottoms[0][:axis]]
