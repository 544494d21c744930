"""Caffe's `RegionTranspose` layer (netdef (region net): p^T(x, D) = p(x + D, -D) over w x w region
windows).

Runs as `netdef.runtime.regions.RegionTranspose`. Tested by `tests/test_rules.py`
(test_rule[RegionTranspose]), and in `tests/test_proposals.py`, `tests/test_region_net.py`,
`tests/test_regions.py`.
"""
from __future__ import annotations

from ._base import Issue, LayerRule, ShapeIssue, fmt, register
from ..modules import ModuleSpec
from ..spatial import map_axes

_P = ("region_transpose_param",)


@register
class RegionTranspose(LayerRule):
    """The region net's transpose (reference-nets.md B3): each region's w x w mask is
    re-read from the regions under its cells, p^T(x, D) = p(x + D, -D). No parameters; every
    output plane is an input plane shifted by its offset, so a region's receptive field
    widens by w - 2 cells (offsets -(h-1) .. h-1 carry data; a = 0 or b = 0 is zeroed)."""

    description = "netdef (region net): p^T(x, D) = p(x + D, -D) over w x w region windows"
    family = "reshape"
    params = ("region_transpose_param",)

    def check_params(self, layer):
        window = layer.region_transpose_param.window
        if window < 2 or window % 2:
            yield Issue(f"window must be an even number of cells >= 2, got {window}",
                        _P + ("window",))

    def top_shapes(self, layer, bottoms):
        (p,) = bottoms
        param = layer.region_transpose_param
        if len(p) != 4 or p[1] != param.window ** 2:
            raise ShapeIssue(f"the bottom must be N x w^2 x H x W with w = {param.window} "
                             f"({param.window ** 2} channels), got {fmt(p)}")
        border = param.window if param.padded else 0
        if min(p[2:]) <= border:
            raise ShapeIssue(f"a padded grid must exceed 2 x {param.window // 2} cells, got "
                             f"{fmt(p)}")
        return [p[:2] + (p[2] - border, p[3] - border)]

    def spatial_map(self, layer, ctx):
        """Top cell x reads bottom cells x + (1-h .. h-1) (padded: shifted by h more)."""
        param = layer.region_transpose_param
        half = param.window // 2
        pad = -1 if param.padded else half - 1

        def through(maps):
            return tuple(m.window(param.window - 1, 1, pad) for m in maps)
        return [map_axes(ctx.bottoms[0].field, through)]

    def lower(self, layer, ctx):
        param = layer.region_transpose_param
        return ModuleSpec("netdef.runtime.regions.RegionTranspose",
                          dict(window=param.window, padded=param.padded))

    def summary(self, layer):
        param = layer.region_transpose_param
        return f"w {param.window}" + (" padded" if param.padded else "")
