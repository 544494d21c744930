from __future__ import annotations

from ._base import Issue, LayerRule, ShapeIssue, canonical_axis, fmt, register

_P = ("crop_param",)


@register
class Crop(LayerRule):
    type_name = "Crop"
    description = "crops bottom 0 to bottom 1's size from axis (default 2) on, at the given offsets"
    family = "reshape"
    bottoms = (2, 2)
    params = ("crop_param",)

    def check_params(self, layer):
        if not layer.HasField("crop_param"):
            yield Issue("no crop_param: BVLC Caffe crops at offset 0 on every axis, but forks "
                        "that omit it meant to align the blobs; check the offsets", (), warning=True)

    def top_shapes(self, layer, bottoms):
        data, reference = bottoms
        param = layer.crop_param
        axis = canonical_axis(param.axis, len(data), _P + ("axis",))
        if len(reference) != len(data):
            raise ShapeIssue(f"bottom 1 ({fmt(reference)}) must have as many axes as bottom 0 "
                             f"({fmt(data)})", ("bottom", 1))
        cropped = len(data) - axis
        offsets = list(param.offset)
        if len(offsets) not in (0, 1, cropped):
            raise ShapeIssue(f"{len(offsets)} offsets for {cropped} cropped axes; give 1 or one per "
                             "axis", _P + ("offset", 0))
        offsets = offsets * cropped if len(offsets) == 1 else offsets or [0] * cropped
        top = list(data[:axis])
        for i, offset in enumerate(offsets):
            dim = axis + i
            if offset + reference[dim] > data[dim]:
                raise ShapeIssue(f"crop out of range on axis {dim}: offset {offset} + size "
                                 f"{reference[dim]} exceeds {data[dim]}",
                                 _P + ("offset", min(i, len(param.offset) - 1)) if param.offset else _P)
            top.append(reference[dim])
        return [tuple(top)]
