"""R-FCN's `PSROIPooling` layer (dialect (R-FCN): position-sensitive average pooling of each
region into group_size x group_size bins, output_dim channels).

Runs as `netdef.runtime.roi.PSROIPooling`. Tested by `tests/test_rules.py`
(test_rule[PSROIPooling]), and in `tests/test_detection.py`.
"""
from __future__ import annotations

from ._base import Issue, LayerRule, ShapeIssue, register
from .roipooling import require_features_and_regions
from ..modules import runtime

_P = ("psroi_pooling_param",)


@register
class PSROIPooling(LayerRule):
    description = ("dialect (R-FCN): position-sensitive average pooling of each region into "
                   "group_size x group_size bins, output_dim channels")
    family = "pool"
    bottoms = (2, 2)
    params = ("psroi_pooling_param",)

    def check_params(self, layer):
        param = layer.psroi_pooling_param
        for name in ("output_dim", "group_size"):
            if getattr(param, name) <= 0:
                yield Issue(f"{name} is required and must be positive", _P + (name,))
        if not param.spatial_scale > 0:
            yield Issue("spatial_scale is required and must be positive", _P + ("spatial_scale",))

    def top_shapes(self, layer, bottoms):
        features, rois = require_features_and_regions(bottoms)
        param = layer.psroi_pooling_param
        groups = param.group_size
        if features[1] != param.output_dim * groups * groups:
            raise ShapeIssue(f"features need output_dim x group_size^2 = "
                             f"{param.output_dim * groups * groups} channels, got {features[1]}",
                             ("bottom", 0))
        return [(rois[0], param.output_dim, groups, groups)]

    def summary(self, layer):
        param = layer.psroi_pooling_param
        return f"{param.group_size}x{param.group_size}, {param.output_dim} out"

    def lower(self, layer, ctx):
        param = layer.psroi_pooling_param
        return runtime("PSROIPooling", output_dim=param.output_dim, group_size=param.group_size,
                       spatial_scale=param.spatial_scale)
