"""SSD's `MultiBoxLoss` layer (dialect (SSD): matches priors to ground-truth boxes, then
localisation plus confidence loss with hard negative mining).

Runs as `netdef.runtime.MultiBoxLoss` (runtime/multibox.py) for the settings SSD's files use:
shared locations, prior-based matching, softmax confidences, MAX_NEGATIVE or no mining.
Tested by `tests/test_rules.py` (test_rule[MultiBoxLoss]), `tests/test_forks.py` and
`tests/test_multibox.py` (against a float64 transcription of the fork).
"""
from __future__ import annotations

from netdef.proto import netdef_pb2 as pb

from ._base import Issue, register
from ._loss import LossRule, loss_settings
from ..modules import LoweringIssue, runtime

M = pb.MultiBoxLossParameter

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

    def lower(self, layer, ctx):
        param = layer.multibox_loss_param
        for unsupported, what in ((not param.share_location, "share_location: false"),
                                  (not param.use_prior_for_matching,
                                   "use_prior_for_matching: false"),
                                  (param.conf_loss_type != M.SOFTMAX, "conf_loss_type LOGISTIC"),
                                  (param.mining_type == M.HARD_EXAMPLE, "mining_type HARD_EXAMPLE"),
                                  (param.map_object_to_agnostic, "map_object_to_agnostic"),
                                  (param.bp_inside, "bp_inside")):
            if unsupported:
                raise LoweringIssue(f"netdef runs MultiBoxLoss as SSD's files set it; not {what}")
        mining = param.mining_type != M.NONE
        if param.HasField("do_neg_mining") and not param.HasField("mining_type"):
            mining = param.do_neg_mining  # the legacy switch
        flows = list(layer.propagate_down) or [True, True]  # the fork's default: loc and conf
        return runtime("MultiBoxLoss", num_classes=param.num_classes, loc_weight=param.loc_weight,
                       overlap_threshold=param.overlap_threshold,
                       per_prediction=param.match_type == M.PER_PREDICTION,
                       background=param.background_label_id,
                       use_difficult=param.use_difficult_gt, neg_pos_ratio=param.neg_pos_ratio,
                       neg_overlap=param.neg_overlap, mining=mining, code_type=param.code_type,
                       variance_in_target=param.encode_variance_in_target,
                       ignore_cross_boundary=param.ignore_cross_boundary_bbox,
                       smooth_l1=param.loc_loss_type == M.SMOOTH_L1,
                       normalization=loss_settings(layer)["normalization"],
                       loc_term=bool(flows[0]), conf_term=bool(flows[1]))
