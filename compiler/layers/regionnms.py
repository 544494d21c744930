"""Caffe's `RegionNMS` layer (netdef (region net): greedy NMS across pathways on coarse masks,
linear time).

Runs as `netdef.runtime.regions.RegionNMS`. Tested by `tests/test_rules.py`
(test_rule[RegionNMS]), and in `tests/test_proposals.py`, `tests/test_region_net.py`.
"""
from __future__ import annotations

from ._base import Issue, LayerRule, ShapeIssue, fmt, register
from ..modules import ModuleSpec

_P = ("region_nms_param",)


@register
class RegionNMS(LayerRule):
    """Non-max suppression over the region net's pathways (reference-nets.md B6): one bottom
    per pathway (its region logits, N x w^2 x Hg x Wg), with that pathway's stride and
    window; the top lists the kept regions (image, pathway, row, column, score), a count
    known only at run time."""

    description = "netdef (region net): greedy NMS across pathways on coarse masks, linear time"
    family = "sink"
    bottoms = (1, None)
    params = ("region_nms_param",)

    def check_params(self, layer):
        param = layer.region_nms_param
        if not (len(param.stride) == len(param.window) == len(layer.bottom)):
            yield Issue(f"give one stride and one window per bottom ({len(layer.bottom)}); "
                        f"found {len(param.stride)} and {len(param.window)}", _P)
        strides = sorted(set(param.stride))
        if any(s == 0 for s in strides):
            yield Issue("strides are at least 1", _P + ("stride",))
        elif any(coarse % fine for k, fine in enumerate(strides) for coarse in strides[k + 1:]):
            yield Issue(f"each stride must divide every coarser one (so that a finer cell lies "
                        f"inside one coarser cell and IoU is exact on coarse masks); got "
                        f"{', '.join(map(str, param.stride))}", _P + ("stride",))
        if not 0 <= param.threshold <= 1:
            yield Issue("threshold is an IoU, in [0, 1]", _P + ("threshold",))

    def top_shapes(self, layer, bottoms):
        param = layer.region_nms_param
        for index, (shape, window) in enumerate(zip(bottoms, param.window)):
            if len(shape) != 4 or shape[1] != window ** 2 or shape[0] != bottoms[0][0]:
                raise ShapeIssue(f"bottom {index} must be N x {window ** 2} x Hg x Wg (window "
                                 f"{window}), got {fmt(shape)}", ("bottom", index))
        return [None]

    def lower(self, layer, ctx):
        param = layer.region_nms_param
        return ModuleSpec("netdef.runtime.regions.RegionNMS", dict(
            strides=list(param.stride), windows=list(param.window),
            threshold=round(param.threshold, 6)))

    def summary(self, layer):
        return f"IoU > {layer.region_nms_param.threshold:g}"
