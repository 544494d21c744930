"""Caffe's `Interp` layer (dialect (DeepLab/PSPNet): bilinear resize by zoom/shrink factor, to a
size, or to bottom 1).

Runs as `netdef.runtime.shape.Interp`. Tested by `tests/test_rules.py` (test_rule[Interp]), and
in `tests/compiler/test_receptive.py`, `tests/test_cli.py`, `tests/test_fuzz_cases.py`.
"""
from __future__ import annotations

from fractions import Fraction

from ._base import Issue, LayerRule, ShapeIssue, fmt, register
from ..spatial import map_axes
from ..modules import runtime

_P = ("interp_param",)


@register
class Interp(LayerRule):
    description = "dialect (DeepLab/PSPNet): bilinear resize by zoom/shrink factor, to a size, or to bottom 1"
    family = "reshape"
    bottoms = (1, 2)
    params = ("interp_param",)

    def check_params(self, layer):
        param = layer.interp_param
        if param.pad_beg > 0 or param.pad_end > 0:
            yield Issue("pad_beg and pad_end must be <= 0 (they crop)", _P + ("pad_beg",))
        for name in ("zoom_factor", "shrink_factor"):
            if param.HasField(name) and getattr(param, name) < 1:
                yield Issue(f"{name} must be at least 1", _P + (name,))
        sized = param.HasField("height") and param.HasField("width")
        if len(layer.bottom) == 1 and not (sized or param.HasField("zoom_factor")
                                           or param.HasField("shrink_factor")):
            yield Issue("give zoom_factor, shrink_factor, height and width, or a second bottom", _P)

    def top_shapes(self, layer, bottoms):
        data = bottoms[0]
        if len(data) != 4:
            raise ShapeIssue(f"Interp takes N x C x H x W blobs, got {fmt(data)}")
        param = layer.interp_param
        if len(bottoms) == 2:
            return [data[:2] + tuple(bottoms[1][2:4])]
        if param.HasField("height") and param.HasField("width"):
            return [data[:2] + (param.height, param.width)]
        out = []
        for size in data[2:]:
            size += param.pad_beg + param.pad_end
            if param.HasField("shrink_factor"):
                size = (size - 1) // param.shrink_factor + 1
            if param.HasField("zoom_factor"):
                size = size + (size - 1) * (param.zoom_factor - 1)
            out.append(size)
        if min(out) < 1:
            raise ShapeIssue(f"output would be empty ({fmt(out)})", _P)
        return [data[:2] + tuple(out)]

    def spatial_map(self, layer, ctx):
        """Bilinear with aligned corners: output o reads input -pad_beg + o*(in'-1)/(out-1),
        in' being the input after pad_beg/pad_end (DeepLab's interp)."""
        data, top = ctx.bottoms[0].shape, ctx.top_shapes[0]
        if data is None or top is None:
            return [ctx.ended()]
        param = layer.interp_param
        begin = -param.pad_beg

        def through(maps):
            if len(maps) != 2:
                return None
            result = []
            for m, size, out in zip(maps, data[2:], top[2:]):
                used = size + param.pad_beg + param.pad_end
                ratio = Fraction(used - 1, out - 1) if out > 1 else Fraction(0)
                result.append(m.resampled(ratio, Fraction(begin)))
            return tuple(result)
        return [map_axes(ctx.bottoms[0].field, through)]

    def summary(self, layer):
        param = layer.interp_param
        for name in ("zoom_factor", "shrink_factor"):
            if param.HasField(name):
                return f"{name.split('_')[0]} {getattr(param, name)}"
        return f"{param.height}x{param.width}" if param.HasField("height") else ""

    def lower(self, layer, ctx):
        param = layer.interp_param
        size = None if len(ctx.bottom_shapes) == 2 else tuple(ctx.top_shapes[0][2:])
        return runtime("Interp", size=size, pad_begin=param.pad_beg, pad_end=param.pad_end)
