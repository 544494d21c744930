"""Caffe's `BatchNorm` layer (normalises by batch statistics, or by stored mean/variance (divided
by the scale blob)).

Runs as `netdef.runtime.normalization.CaffeBatchNorm`. Tested by `tests/test_rules.py`
(test_rule[BatchNorm]), and in `tests/compiler/test_upgrade.py`, `tests/test_more_layers.py`.
"""
from __future__ import annotations

import numpy as np

from ._base import register
from ._pointwise import PointwiseRule
from ..modules import runtime


@register
class BatchNorm(PointwiseRule):
    description = "normalises by batch statistics, or by stored mean/variance (divided by the scale blob)"
    family = "norm"
    params = ("batch_norm_param",)

    def upgrade(self, layer) -> None:
        if len(layer.param) == 3:
            del layer.param[:]  # old nets froze the statistics blobs with three lr_mult 0 specs

    def learned_shapes(self, layer, bottoms):
        channels = _channels(bottoms[0])
        return [(channels,), (channels,), (1,)]  # mean, variance, their scale factor

    def caffe_blobs(self, layer, blobs):
        """Written with the scale factor 1: the statistics divided by it (0 stays 0)."""
        mean, variance, factor = blobs
        scale = 0.0 if factor[0] == 0 else 1.0 / float(factor[0])
        return [mean * scale, variance * scale, np.ones(1, np.float32)]

    def lower(self, layer, ctx):
        param = layer.batch_norm_param
        global_stats = param.use_global_stats if param.HasField("use_global_stats") else None
        return runtime("CaffeBatchNorm", ("mean", "variance", "scale_factor"),
                       channels=_channels(ctx.bottom_shapes[0]), eps=param.eps,
                       use_global_stats=global_stats, momentum=param.moving_average_fraction)


def _channels(shape) -> int:
    """Caffe's rule: a 1-axis blob is one channel."""
    return shape[1] if len(shape) > 1 else 1
