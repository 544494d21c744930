"""Caffe's `Crop` layer (crops bottom 0 to bottom 1's size from axis (default 2) on, at the given
offsets).

Runs as `netdef.runtime.shape.Crop`. Tested by `tests/test_rules.py` (test_rule[Crop]), and in
`tests/compiler/layers/test_shape_rules.py`, `tests/compiler/test_receptive.py`,
`tests/compiler/test_receptive_oracle.py`.
"""
from __future__ import annotations

from ._base import LayerRule, ShapeIssue, canonical_axis, fmt, register
from ..spatial import EVERYWHERE, number
from ..modules import runtime

_P = ("crop_param",)


@register
class Crop(LayerRule):
    """Crop. Without crop_param, BVLC crops at zero offsets, but the forks that
    omit it (CRF-RNN's deploy, U-Net's centre crops) mean "align the blobs", so
    netdef solves the offsets from the coordinate maps and says so. Written
    offsets are used as written and checked against the maps."""

    description = "crops bottom 0 to bottom 1's size from axis (default 2) on, at the given offsets"
    family = "reshape"
    bottoms = (2, 2)
    params = ("crop_param",)

    def top_shapes(self, layer, bottoms):
        data, reference = bottoms
        param = layer.crop_param
        axis = canonical_axis(param.axis, len(data), _P + ("axis",))
        if len(reference) != len(data):
            raise ShapeIssue(f"bottom 1 ({fmt(reference)}) must have as many axes as bottom 0 "
                             f"({fmt(data)})", ("bottom", 1))
        offsets = written_offsets(param, len(data) - axis)
        top = list(data[:axis])
        for i, offset in enumerate(offsets):
            dim = axis + i
            if offset + reference[dim] > data[dim]:
                raise ShapeIssue(f"crop out of range on axis {dim}: offset {offset} + size "
                                 f"{reference[dim]} exceeds {data[dim]}",
                                 _P + ("offset", min(i, len(param.offset) - 1)) if param.offset else _P)
            top.append(reference[dim])
        return [tuple(top)]

    def spatial_map(self, layer, ctx):
        data, reference = ctx.bottoms
        param = layer.crop_param
        ndim = len(data.shape) if data.shape is not None else 4
        try:
            axis = canonical_axis(param.axis, ndim)
        except ShapeIssue:
            return [EVERYWHERE]
        offsets = written_offsets(param, ndim - axis)
        solved, reason = solve_offsets(data.field, reference.field, axis)
        if not layer.HasField("crop_param") and ctx.solve_crops:
            offsets = self._use_solution(ctx, axis, offsets, solved, reason)
        elif solved and solved != offsets[-len(solved):]:
            right = [0] * (len(offsets) - len(solved)) + solved
            ctx.warn(f"offsets {list_text(offsets)} do not align the blobs: the coordinate maps "
                     f"give {list_text(right)}", _P + ("offset",))
            if layer.HasField("crop_param"):  # for `upgrade --solve-crops`; lowering keeps
                ctx.solution = {"offset": right}  # the written offsets, as Caffe does
        if data.field is EVERYWHERE:
            return [EVERYWHERE]

        def shifted(maps):  # spatial axis k is blob axis k + 2
            return tuple(m.shifted(offsets[k + 2 - axis]) if k + 2 >= axis else m
                         for k, m in enumerate(maps))
        return [{name: shifted(maps) for name, maps in data.field.items()}]

    def _use_solution(self, ctx, axis, offsets, solved, reason):
        if solved is None:
            ctx.warn(f"no crop_param, and the offsets cannot be solved ({reason}); BVLC's zero "
                     "offsets are used")
            return offsets
        offsets = [0] * (len(offsets) - len(solved)) + solved
        ctx.warn(f"no crop_param: offsets {list_text(offsets)} (axis {axis} on) solved from the "
                 "coordinate maps; `netdef upgrade --solve-crops` writes them into the file")
        data, reference = (b.shape for b in ctx.bottoms)
        if data is not None and reference is not None:
            for dim, offset in zip(range(axis, len(data)), offsets):
                if offset + reference[dim] > data[dim]:
                    ctx.error(f"solved offset {offset} on axis {dim} + size {reference[dim]} "
                              f"exceeds bottom 0's {data[dim]}: this input is too small to align")
        ctx.solution = {"offset": offsets}
        return offsets

    def write_solution(self, layer, solution):
        offsets = solution.get("offset")
        if offsets is None:
            return False
        param = layer.crop_param  # creates crop_param if absent
        compact = offsets[:1] if len(set(offsets)) == 1 else offsets
        changed = list(param.offset) != compact or not layer.HasField("crop_param")
        del param.offset[:]
        param.offset.extend(compact)
        param.axis = param.axis  # marks crop_param present even when offsets are all default
        return changed

    def summary(self, layer):
        param = layer.crop_param
        if not layer.HasField("crop_param"):
            return ""
        return f"axis {param.axis}, offset {list_text(param.offset) or 0}"

    def lower(self, layer, ctx):
        ndim = len(ctx.bottom_shapes[0])
        axis = layer.crop_param.axis % ndim
        # written offsets are Caffe's, right or wrong (the check warns); solved ones only
        # stand in for a crop_param the file lacks
        solved = None if layer.HasField("crop_param") else ctx.solution.get("offset")
        offsets = solved or written_offsets(layer.crop_param, ndim - axis)
        return runtime("Crop", axis=axis, offsets=tuple(offsets))


def written_offsets(param, cropped: int) -> list[int]:
    """One offset per cropped axis: as written, one value for all, or zeros."""
    offsets = list(param.offset)
    if len(offsets) not in (0, 1, cropped):
        raise ShapeIssue(f"{len(offsets)} offsets for {cropped} cropped axes; give 1 or one per "
                         "axis", _P + ("offset", 0))
    return offsets * cropped if len(offsets) == 1 else offsets or [0] * cropped


def solve_offsets(data_field, reference_field, axis: int):
    """Offsets per cropped spatial axis that put bottom 0's units on bottom 1's:
    (O_ref - O_data) / S, a whole number of units at equal strides. (offsets, None) or (None, why)."""
    if data_field is EVERYWHERE or reference_field is EVERYWHERE:
        return None, "a bottom depends on every input position"
    common = [name for name in data_field if name in reference_field]
    if not common:
        return None, "the bottoms share no image input"
    name = common[0]
    data_maps, reference_maps = data_field[name], reference_field[name]
    first = max(axis - 2, 0)
    offsets = []
    for index in range(first, min(len(data_maps), len(reference_maps))):
        data_map, reference_map = data_maps[index], reference_maps[index]
        if data_map.stride != reference_map.stride:
            return None, (f"strides differ on input '{name}': {number(data_map.stride)} and "
                          f"{number(reference_map.stride)}")
        offset = (reference_map.offset - data_map.offset) / data_map.stride
        if offset.denominator != 1 or offset < 0:
            return None, (f"bottom 1 starts {number(offset)} units into bottom 0 on input "
                          f"'{name}'; a crop needs a whole, non-negative number")
        offsets.append(int(offset))
    return offsets, None


def list_text(values) -> str:
    return ", ".join(str(v) for v in values)
