from __future__ import annotations

import math

from ._base import register
from ._convolution import ConvolutionLike


@register
class Im2col(ConvolutionLike):
    type_name = "Im2col"
    description = "unfolds convolution windows into channels (C * prod(kernel))"
    family = "reshape"
    needs_num_output = False

    def out_channels(self, param, channels, window):
        return channels * math.prod(window.kernel)
