"""Caffe's `ImageSegData` layer (dialect (DeepLab): images with label maps; optional third top of
image sizes).

A data layer: its tops are graph inputs. Tested by `tests/test_rules.py`
(test_rule[ImageSegData]).
"""
from __future__ import annotations

from ._base import register
from ._data import DataRule, image_side


@register
class ImageSegData(DataRule):
    description = "dialect (DeepLab): images with label maps; optional third top of image sizes"
    tops = (2, 3)
    params = ("image_data_param", "transform_param")

    def input_shapes(self, layer):
        batch = layer.image_data_param.batch_size
        side = image_side(layer)
        if side is None:
            shapes = [None, None]
        else:
            channels = 3 if layer.image_data_param.is_color else 1
            shapes = [(batch, channels) + side, (batch, 1) + side]
        return (shapes + [(batch, 1, 1, 2)])[: len(layer.top)]
