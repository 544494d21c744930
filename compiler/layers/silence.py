from __future__ import annotations

from ._base import LayerRule, register


@register
class Silence(LayerRule):
    type_name = "Silence"
    description = "consumes bottoms so they are not net outputs; no tops"
    family = "sink"
    bottoms = (1, None)
    tops = (0, 0)

    def top_shapes(self, layer, bottoms):
        return []
