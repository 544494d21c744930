from __future__ import annotations

from ._base import LayerRule, register


@register
class HDF5Output(LayerRule):
    type_name = "HDF5Output"
    description = "writes its two bottoms (data, label) to an HDF5 file"
    family = "sink"
    bottoms = (2, 2)
    tops = (0, 0)
    params = ("hdf5_output_param",)

    def top_shapes(self, layer, bottoms):
        return []
