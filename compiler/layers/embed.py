from __future__ import annotations

from ._base import Issue, LayerRule, register

_P = ("embed_param",)


@register
class Embed(LayerRule):
    type_name = "Embed"
    description = "looks up a learned num_output vector for each integer index in [0, input_dim)"
    family = "conv"
    params = ("embed_param",)

    def check_params(self, layer):
        for name in ("num_output", "input_dim"):
            if getattr(layer.embed_param, name) == 0:
                yield Issue(f"{name} is required and must be positive", _P)

    def top_shapes(self, layer, bottoms):
        return [bottoms[0] + (layer.embed_param.num_output,)]
