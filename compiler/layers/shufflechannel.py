"""ShuffleNet's `ShuffleChannel` layer (dialect (farmingyard/ShuffleNet): channels seen as
group x (C / group), transposed).

Runs as `netdef.runtime.shape.ShuffleChannel`. Tested by `tests/test_rules.py`
(test_rule[ShuffleChannel]), and in `tests/test_forks.py`.
"""
from __future__ import annotations

from ._base import ShapeIssue, fmt, positive, register
from ._pointwise import PointwiseRule
from ..modules import runtime

_P = ("shuffle_channel_param",)


@register
class ShuffleChannel(PointwiseRule):
    description = "dialect (farmingyard/ShuffleNet): channels seen as group x (C / group), transposed"
    family = "reshape"
    params = ("shuffle_channel_param",)

    def check_params(self, layer):
        yield from positive(layer.shuffle_channel_param.group, _P + ("group",), "group")

    def top_shapes(self, layer, bottoms):
        shape, group = bottoms[0], layer.shuffle_channel_param.group
        if len(shape) < 2 or group <= 0:
            raise ShapeIssue(f"needs a channel axis (N x C x ...), got {fmt(shape)}")
        if shape[1] % group:
            raise ShapeIssue(f"{shape[1]} channels do not split into {group} groups", _P + ("group",))
        return [shape]

    def summary(self, layer):
        return f"group {layer.shuffle_channel_param.group}"

    def lower(self, layer, ctx):
        return runtime("ShuffleChannel", group=layer.shuffle_channel_param.group)
