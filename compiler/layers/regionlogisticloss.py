"""Caffe's `RegionLogisticLoss` layer (netdef (region net): per-region sigmoid cross-entropy at
full resolution).

Runs as `netdef.runtime.regions.RegionLogisticLoss`. Tested by `tests/test_rules.py`
(test_rule[RegionLogisticLoss]), and in `tests/test_region_net.py`.
"""
from __future__ import annotations

from ._base import Issue, ShapeIssue, fmt, register
from ._loss import LossRule, loss_settings
from ..modules import ModuleSpec

_P = ("region_loss_param",)


@register
class RegionLogisticLoss(LossRule):
    """The region net's loss (reference-nets.md B5): bottoms are a pathway's region logits
    (N x w^2 x Hg x Wg) and the segments (N x 1 x H x W, segment ids, 0 = none); each
    region's mask is upsampled by the stride on the fly, in chunks, and scored with sigmoid
    cross-entropy against the centre pixel's segment."""

    description = "netdef (region net): per-region sigmoid cross-entropy at full resolution"
    params = ("region_loss_param", "loss_param")

    def check_params(self, layer):
        param = layer.region_loss_param
        if param.stride < 1:
            yield Issue("stride (pixels per cell) is required", _P + ("stride",))
        if param.window < 2 or param.window % 2:
            yield Issue(f"window must be an even number of cells >= 2, got {param.window}",
                        _P + ("window",))
        if param.chunk_pixels < 1:
            yield Issue("chunk_pixels must be positive", _P + ("chunk_pixels",))

    def check_label(self, layer, bottoms):
        logits, segments = bottoms
        param = layer.region_loss_param
        if len(logits) != 4 or logits[1] != param.window ** 2:
            raise ShapeIssue(f"the logits must be N x {param.window ** 2} x Hg x Wg (window "
                             f"{param.window}), got {fmt(logits)}")
        if len(segments) != 4 or segments[1] != 1 or segments[0] != logits[0]:
            raise ShapeIssue(f"the segments must be N x 1 x H x W with the logits' N, got "
                             f"{fmt(segments)}", ("bottom", 1))
        for cells, pixels in zip(logits[2:], segments[2:]):
            if (cells - 1) * param.stride >= pixels:
                raise ShapeIssue(f"a grid of {fmt(logits[2:])} cells at stride {param.stride} "
                                 f"does not fit the segments' {fmt(segments[2:])} pixels",
                                 ("bottom", 1))

    def lower(self, layer, ctx):
        param = layer.region_loss_param
        ignore = loss_settings(layer)["ignore_label"]
        return ModuleSpec("netdef.runtime.regions.RegionLogisticLoss", dict(
            stride=param.stride, window=param.window,
            cut_off="ignore" if param.cut_off == param.IGNORE else "negative",
            ignore_label=ignore, chunk_pixels=param.chunk_pixels))

    def summary(self, layer):
        param = layer.region_loss_param
        return f"S {param.stride} w {param.window}"
