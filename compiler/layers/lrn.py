from __future__ import annotations

from ._base import Issue, ShapeIssue, fmt, register
from ._pointwise import PointwiseRule

_P = ("lrn_param",)


@register
class LRN(PointwiseRule):
    type_name = "LRN"
    description = "local response normalisation across channels (alpha / n) or within a channel (alpha / n^2)"
    family = "norm"
    params = ("lrn_param",)

    def check_params(self, layer):
        size = layer.lrn_param.local_size
        if size % 2 == 0:
            yield Issue(f"local_size must be odd, got {size}", _P + ("local_size",))

    def top_shapes(self, layer, bottoms):
        if len(bottoms[0]) != 4:
            raise ShapeIssue(f"LRN takes N x C x H x W blobs, got {fmt(bottoms[0])}")
        return [bottoms[0]]
