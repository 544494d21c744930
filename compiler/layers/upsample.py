"""Caffe's `Upsample` layer (dialect (SegNet/ENet): max unpooling with the mask top of a MAX
pooling).

Runs as `netdef.runtime.pooling.Unpool`. Tested by `tests/test_rules.py` (test_rule[Upsample]),
and in `tests/compiler/test_receptive.py`, `tests/test_cli.py`, `tests/test_fuzz_cases.py`.
"""
from __future__ import annotations

from ._base import LayerRule, ShapeIssue, fmt, register
from ..spatial import map_axes
from ..modules import runtime

_P = ("upsample_param",)


@register
class Upsample(LayerRule):
    description = "dialect (SegNet/ENet): max unpooling with the mask top of a MAX pooling"
    family = "reshape"
    bottoms = (2, 2)
    params = ("upsample_param",)

    def top_shapes(self, layer, bottoms):
        data, mask = bottoms
        if len(data) != 4:
            raise ShapeIssue(f"takes N x C x H x W blobs, got {fmt(data)}")
        if mask != data:
            raise ShapeIssue(f"the mask ({fmt(mask)}) must have the data's shape ({fmt(data)})",
                             ("bottom", 1))
        param = layer.upsample_param
        height = param.upsample_h or data[2] * (param.scale_h or param.scale) - int(param.pad_out_h)
        width = param.upsample_w or data[3] * (param.scale_w or param.scale) - int(param.pad_out_w)
        if height < data[2] or width < data[3]:
            raise ShapeIssue(f"output {height}x{width} is smaller than the input", _P)
        return [data[:2] + (height, width)]

    def spatial_map(self, layer, ctx):
        """Max unpooling puts unit i in output block [i*scale, (i+1)*scale): the geometry
        of a deconvolution with kernel = stride = scale."""
        param = layer.upsample_param
        scales = (param.scale_h or param.scale, param.scale_w or param.scale)

        def through(maps):
            if len(maps) != 2:
                return None
            return tuple(m.transposed_window(scale, scale, 0) for m, scale in zip(maps, scales))
        return [map_axes(ctx.bottoms[0].field, through)]

    def lower(self, layer, ctx):
        param = layer.upsample_param
        return runtime("Unpool", scale=(param.scale_h or param.scale, param.scale_w or param.scale),
                       size=tuple(ctx.top_shapes[0][2:]))
