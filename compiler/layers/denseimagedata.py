"""Caffe's `DenseImageData` layer (dialect (SegNet): images with dense label images, listed in a
text file).

A data layer: its tops are graph inputs. Tested by `tests/test_rules.py`
(test_rule[DenseImageData]).
"""
from __future__ import annotations

from ._base import register
from ._data import DataRule


@register
class DenseImageData(DataRule):
    description = "dialect (SegNet): images with dense label images, listed in a text file"
    tops = (2, 2)
    params = ("dense_image_data_param", "transform_param")

    def input_shapes(self, layer):
        param = layer.dense_image_data_param
        height = param.crop_height or param.new_height
        width = param.crop_width or param.new_width
        if not (height and width):
            return [None, None]
        channels = 3 if param.is_color else 1
        return [(param.batch_size, channels, height, width), (param.batch_size, 1, height, width)]
