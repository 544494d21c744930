"""Caffe's `Im2col` layer (unfolds convolution windows into channels (C * prod(kernel))).

Runs as `netdef.runtime.linear.Im2col`. Tested by `tests/test_rules.py` (test_rule[Im2col]), and
in `tests/test_more_layers.py`.
"""
from __future__ import annotations

import math

from ._base import register
from ._convolution import ConvolutionLike
from ..modules import runtime
from ..window import conv_window


@register
class Im2col(ConvolutionLike):
    description = "unfolds convolution windows into channels (C * prod(kernel))"
    family = "reshape"
    needs_num_output = False

    def out_channels(self, param, channels, window):
        return channels * math.prod(window.kernel)

    def learned_shapes(self, layer, bottoms):
        return []  # a rearrangement: nothing learned

    def flops(self, layer, bottoms, tops):
        return 0
    def lower(self, layer, ctx):
        window = conv_window(layer.convolution_param, len(ctx.bottom_shapes[0]) - 2)
        return runtime("Im2col", kernel=window.kernel, stride=window.stride, pad=window.pad,
                       dilation=window.dilation, out_size=tuple(ctx.top_shapes[0][2:]))
