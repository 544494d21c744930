"""SSD's `MultiBoxLoss` layer (dialect (SSD): matches priors to ground-truth boxes, then
localisation plus confidence loss with hard negative mining).

Checked, not run yet (SSD training arrives with the data path). Tested by
`tests/test_rules.py` (test_rule[MultiBoxLoss]), and in `tests/test_forks.py`.
"""
from __future__ import annotations

from ._base import Issue, register
from ._loss import LossRule

_P = ("multibox_loss_param",)


@register
class MultiBoxLoss(LossRule):
    description = ("dialect (SSD): matches priors to ground-truth boxes, then localisation plus "
                   "confidence loss with hard negative mining")
    bottoms = (4, 4)  # locations, confidences, priors, ground truth
    params = ("multibox_loss_param", "loss_param")

    def check_params(self, layer):
        param = layer.multibox_loss_param
        if not param.num_classes:
            yield Issue("num_classes is required and must be positive", _P)
        if not 0 <= param.overlap_threshold <= 1:
            yield Issue(f"overlap_threshold must lie in [0, 1], got {param.overlap_threshold:g}",
                        _P + ("overlap_threshold",))
