from __future__ import annotations

from ._base import Issue, LayerRule, ShapeIssue, fmt, register


@register
class SPP(LayerRule):
    type_name = "SPP"
    description = "spatial pyramid pooling: levels of 1, 2x2, 4x4... bins, concatenated"
    family = "pool"
    params = ("spp_param",)

    def check_params(self, layer):
        if layer.spp_param.pyramid_height == 0:
            yield Issue("pyramid_height is required and must be positive", ("spp_param",))

    def top_shapes(self, layer, bottoms):
        shape = bottoms[0]
        if len(shape) != 4:
            raise ShapeIssue(f"SPP takes N x C x H x W blobs, got {fmt(shape)}")
        bins = sum(4 ** level for level in range(layer.spp_param.pyramid_height))
        return [(shape[0], shape[1] * bins, 1, 1)]
