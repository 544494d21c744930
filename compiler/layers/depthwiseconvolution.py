"""MobileNet ports' `DepthwiseConvolution` layer (dialect (yonghenglh6/DepthwiseConvolution):
a depthwise convolution, one filter per channel).

Runs as `torch.nn.Conv2d`. Tested by `tests/test_rules.py` (test_rule[DepthwiseConvolution]),
and in `tests/test_forks.py`.
"""
from __future__ import annotations

from ._base import register
from ._convolution import DepthwiseLike


@register
class DepthwiseConvolution(DepthwiseLike):
    description = "dialect (yonghenglh6): a depthwise convolution, one filter per channel"
