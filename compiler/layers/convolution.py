"""Caffe's `Convolution` layer (N-d convolution: groups, dilation (or DeepLab's hole), optional
bias).

Runs as `torch.nn.Conv2d`. Tested by `tests/test_rules.py` (test_rule[Convolution]), and in
`tests/compiler/layers/test_shape_rules.py`, `tests/compiler/layers/test_window_oracle.py`,
`tests/compiler/test_fillers.py`.
"""
from __future__ import annotations

from ._base import register
from ._convolution import ConvolutionLike


@register
class Convolution(ConvolutionLike):
    description = "N-d convolution: groups, dilation (or DeepLab's hole), optional bias"
