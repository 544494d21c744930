"""Caffe's `ImageData` layer (reads images listed in a text file with their labels).

A data layer: its tops are graph inputs, fed in training by its data_source. Tested by
`tests/test_rules.py` (test_rule[ImageData]), and in `tests/test_data.py`.
"""
from __future__ import annotations

from ._base import register
from ._data import DataRule, image_side, with_label


@register
class ImageData(DataRule):
    description = "reads images listed in a text file with their labels"
    params = ("image_data_param", "transform_param")

    def data_source(self, layer, ctx):
        from netdef.training.data import ImageList
        return ImageList(layer, ctx)

    def input_shapes(self, layer):
        param = layer.image_data_param
        side = image_side(layer, param.new_height, param.new_width)
        data = (param.batch_size, 3 if param.is_color else 1) + side if side else None
        return with_label(data, param.batch_size, len(layer.top))
