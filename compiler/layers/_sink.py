"""Layers that consume blobs and produce none."""
from __future__ import annotations

from ._base import LayerRule


class SinkRule(LayerRule):
    family = "sink"
    bottoms = (1, None)
    tops = (0, 0)

    def top_shapes(self, layer, bottoms):
        return []

    def lower(self, layer, ctx):
        return None  # Caffe writes files here; a torch module has nothing to compute
