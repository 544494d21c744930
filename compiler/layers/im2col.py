from __future__ import annotations

import math

from ._base import register
from ._convolution import ConvolutionLike, axis_label
from ._window import too_small


@register
class Im2col(ConvolutionLike):
    type_name = "Im2col"
    description = "unfolds convolution windows into channels (C * prod(kernel))"
    family = "reshape"
    needs_num_output = False

    def out_channels(self, param, channels, window):
        return channels * math.prod(window.kernel)

    def spatial_out(self, axis, size, window):
        extent, pad = window.extent(axis), window.pad[axis]
        if size + 2 * pad < extent:
            raise too_small(axis_label(axis), size, pad, extent, ("convolution_param", "kernel_size"))
        return (size + 2 * pad - extent) // window.stride[axis] + 1
