from __future__ import annotations

from ._base import register
from ._convolution import ConvolutionLike


@register
class Convolution(ConvolutionLike):
    description = "N-d convolution: groups, dilation (or DeepLab's hole), optional bias"
