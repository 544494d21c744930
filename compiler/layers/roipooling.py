"""Caffe's `ROIPooling` layer (dialect (fast-rcnn): max-pools each region (bottom 1, R x 5) to
pooled_h x pooled_w).

Runs as `netdef.runtime.roi.ROIPooling`. Tested by `tests/test_rules.py`
(test_rule[ROIPooling]), and in `tests/test_cli.py`, `tests/test_sequence_region_layers.py`.
"""
from __future__ import annotations

from ._base import Issue, LayerRule, ShapeIssue, fmt, register
from ..modules import runtime

_P = ("roi_pooling_param",)


@register
class ROIPooling(LayerRule):
    description = "dialect (fast-rcnn): max-pools each region (bottom 1, R x 5) to pooled_h x pooled_w"
    family = "pool"
    bottoms = (2, 2)
    params = ("roi_pooling_param",)

    def check_params(self, layer):
        for name in ("pooled_h", "pooled_w"):
            if getattr(layer.roi_pooling_param, name) == 0:
                yield Issue(f"{name} is required and must be positive", _P)

    def top_shapes(self, layer, bottoms):
        features, rois = require_features_and_regions(bottoms)
        param = layer.roi_pooling_param
        return [(rois[0], features[1], param.pooled_h, param.pooled_w)]

    def lower(self, layer, ctx):
        param = layer.roi_pooling_param
        return runtime("ROIPooling", pooled_h=param.pooled_h, pooled_w=param.pooled_w,
                       spatial_scale=param.spatial_scale)

    def summary(self, layer):
        param = layer.roi_pooling_param
        return f"{param.pooled_h}x{param.pooled_w} scale {param.spatial_scale:g}"


def require_features_and_regions(bottoms) -> tuple:
    """Region pooling's bottoms: an N x C x H x W map and R x 5 regions (batch index, x1, y1,
    x2, y2); PSROIPooling's too."""
    features, rois = bottoms
    if len(features) != 4:
        raise ShapeIssue(f"features must be N x C x H x W, got {fmt(features)}")
    if len(rois) < 2 or rois[1] != 5:
        raise ShapeIssue(f"regions must be R x 5 (batch index, x1, y1, x2, y2), got {fmt(rois)}",
                         ("bottom", 1))
    return features, rois
