"""DeepLab v1's `PADDING` layer (dialect (DeepLab v1, V1 files): pad_beg and pad_end zeros
around each spatial axis; negative values crop).

Runs as `netdef.runtime.shape.Padding`. Tested by `tests/test_rules.py` (test_rule[PADDING]),
and in `tests/test_forks.py`.
"""
from __future__ import annotations

from ._base import Issue, LayerRule, ShapeIssue, fmt, register
from ..spatial import map_axes
from ..modules import runtime

_P = ("padding_param",)


@register
class PADDING(LayerRule):
    description = ("dialect (DeepLab v1, V1 files): pad_beg and pad_end zeros around each spatial "
                   "axis; negative values crop")
    family = "reshape"
    params = ("padding_param",)

    def check_params(self, layer):
        param = layer.padding_param
        if param.pad_beg * param.pad_end < 0:
            yield Issue(f"pad_beg {param.pad_beg} and pad_end {param.pad_end} must share a sign",
                        _P + ("pad_end",))

    def top_shapes(self, layer, bottoms):
        shape, param = bottoms[0], layer.padding_param
        if len(shape) != 4:
            raise ShapeIssue(f"PADDING takes N x C x H x W blobs, got {fmt(shape)}")
        size = tuple(n + param.pad_beg + param.pad_end for n in shape[2:])
        if min(size) <= 0:
            raise ShapeIssue(f"the padding leaves {fmt(size)}", _P)
        return [shape[:2] + size]

    def spatial_map(self, layer, ctx):
        shift = -layer.padding_param.pad_beg
        return [map_axes(ctx.bottoms[0].field, lambda maps: tuple(m.shifted(shift) for m in maps))]

    def summary(self, layer):
        return f"{layer.padding_param.pad_beg:+d}/{layer.padding_param.pad_end:+d}"

    def lower(self, layer, ctx):
        return runtime("Padding", pad_beg=layer.padding_param.pad_beg,
                       pad_end=layer.padding_param.pad_end)
