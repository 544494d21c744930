from __future__ import annotations

from ._base import register
from ._convolution import ConvolutionLike, axis_label
from ._window import too_small


@register
class Convolution(ConvolutionLike):
    type_name = "Convolution"
    description = "N-d convolution: groups, dilation (or DeepLab's hole), optional bias"

    def spatial_out(self, axis, size, window):
        extent, pad = window.extent(axis), window.pad[axis]
        if size + 2 * pad < extent:
            raise too_small(axis_label(axis), size, pad, extent, ("convolution_param", "kernel_size"))
        return (size + 2 * pad - extent) // window.stride[axis] + 1
