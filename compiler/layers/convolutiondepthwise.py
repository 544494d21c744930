"""ShuffleNet's `ConvolutionDepthwise` layer (dialect (farmingyard/ShuffleNet): a depthwise
convolution, one filter per channel).

Runs as `torch.nn.Conv2d`. Tested by `tests/test_rules.py` (test_rule[ConvolutionDepthwise]),
and in `tests/test_forks.py`.
"""
from __future__ import annotations

from ._base import register
from ._convolution import DepthwiseLike


@register
class ConvolutionDepthwise(DepthwiseLike):
    description = "dialect (farmingyard/ShuffleNet): a depthwise convolution, one filter per channel"
