"""Caffe's `Tile` layer (repeats the blob `tiles` times along axis).

Runs as `netdef.runtime.shape.Tile`. Tested by `tests/test_rules.py` (test_rule[Tile]), and in
`tests/test_more_layers.py`.
"""
from __future__ import annotations

from ._base import Issue, LayerRule, canonical_axis, register
from ..modules import runtime

_P = ("tile_param",)


@register
class Tile(LayerRule):
    description = "repeats the blob `tiles` times along axis"
    family = "reshape"
    params = ("tile_param",)

    def check_params(self, layer):
        if not layer.tile_param.HasField("tiles"):
            yield Issue("tiles is required", _P)
        elif layer.tile_param.tiles <= 0:
            yield Issue(f"tiles must be positive, got {layer.tile_param.tiles}", _P + ("tiles",))

    def top_shapes(self, layer, bottoms):
        shape = bottoms[0]
        axis = canonical_axis(layer.tile_param.axis, len(shape), _P + ("axis",))
        return [shape[:axis] + (shape[axis] * layer.tile_param.tiles,) + shape[axis + 1:]]

    def spatial_map(self, layer, ctx):
        if ctx.keeps_positions(layer.tile_param.axis):
            return ctx.passthrough(1)
        return [ctx.ended()]

    def lower(self, layer, ctx):
        param = layer.tile_param
        return runtime("Tile", axis=param.axis % len(ctx.bottom_shapes[0]), tiles=param.tiles)
