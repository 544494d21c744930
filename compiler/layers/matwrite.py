from __future__ import annotations

from ._base import LayerRule, register


@register
class MatWrite(LayerRule):
    type_name = "MatWrite"
    description = "dialect (DeepLab): writes its bottom to .mat files; a sink"
    family = "sink"
    bottoms = (1, None)
    tops = (0, 0)
    params = ("mat_write_param",)

    def top_shapes(self, layer, bottoms):
        return []
