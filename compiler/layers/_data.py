"""Data layers: their tops are graph inputs, sized by their parameters or by the user."""
from __future__ import annotations

from ._base import Issue, LayerRule


class DataRule(LayerRule):
    family = "data"
    bottoms = (0, 0)
    tops = (1, 2)
    is_input = True

    def top_shapes(self, layer, bottoms):
        return self.input_shapes(layer)


def image_side(layer, height: int = 0, width: int = 0):
    """(H, W) of transformed images: the crop if any, else a fixed resize, else unknown."""
    crop = layer.transform_param.crop_size
    if crop:
        return crop, crop
    if height and width:
        return height, width
    return None


def batch_issues(batch_size: int, field) -> list[Issue]:
    return [] if batch_size else [Issue("batch_size is required and must be positive", field)]


def with_label(data_shape, batch: int, tops: int) -> list:
    """The data top and, when present, a label top of one value per item."""
    return [data_shape, (batch,)][:tops]
