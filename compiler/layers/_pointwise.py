"""Layers that act on each element alone: the top has the bottom's shape."""
from __future__ import annotations

from ._base import LayerRule


class PointwiseRule(LayerRule):
    family = "pointwise"

    def top_shapes(self, layer, bottoms):
        return [bottoms[0]]

    def spatial_map(self, layer, ctx):
        return ctx.passthrough(len(layer.top))
