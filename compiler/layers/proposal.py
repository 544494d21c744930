"""The region proposal layer of Faster R-CNN: OpenCV's `Proposal` type, and py-faster-rcnn's
Python layer `rpn.proposal_layer.ProposalLayer`, which this rule serves built in (the
`Python` rule hands it over; no user code runs).

Runs as `netdef.runtime.detection.Proposal`. Tested by `tests/test_rules.py`
(test_rule[Proposal]), and in `tests/test_detection.py`, `tests/test_forks.py`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ._base import Issue, LayerRule, ShapeIssue, fmt, register
from ..modules import runtime

PYTHON_LAYER = ("rpn.proposal_layer", "ProposalLayer")  # (module, layer) served built in
_P = ("proposal_param",)


@dataclass(frozen=True)
class Settings:
    feat_stride: int = 16
    base_size: int = 16
    min_size: int = 16
    ratios: tuple = (0.5, 1.0, 2.0)
    scales: tuple = (8.0, 16.0, 32.0)
    pre_nms_topn: int = 6000
    post_nms_topn: int = 300
    nms_thresh: float = 0.7


# py-faster-rcnn's config (lib/fast_rcnn/config.py) for its Python layer, by phase
_PYTHON_PHASES = {"TRAIN": dict(pre_nms_topn=12000, post_nms_topn=2000),
                  "TEST": dict(pre_nms_topn=6000, post_nms_topn=300)}


def settings(layer, training: bool = False) -> Settings:
    """The layer's settings; a ValueError names what the Python layer's param_str lacks."""
    if layer.type != "Proposal":
        import yaml  # py-faster-rcnn reads param_str as YAML; safe_load runs nothing
        try:
            given = yaml.safe_load(layer.python_param.param_str or "{}")
        except yaml.YAMLError as exc:
            raise ValueError(f"param_str is not YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(given, dict) or "feat_stride" not in given:
            raise ValueError("param_str must give 'feat_stride', as py-faster-rcnn requires")
        phase = _PYTHON_PHASES["TRAIN" if training else "TEST"]
        try:
            return Settings(feat_stride=int(given["feat_stride"]),
                            scales=tuple(float(s) for s in given.get("scales", (8, 16, 32))),
                            **phase)
        except (TypeError, ValueError):
            raise ValueError("feat_stride must be a number and scales a list of numbers") from None
    param = layer.proposal_param
    return Settings(param.feat_stride, param.base_size, param.min_size,
                    tuple(param.ratio) or Settings.ratios, tuple(param.scale) or Settings.scales,
                    param.pre_nms_topn, param.post_nms_topn, param.nms_thresh)


@register
class Proposal(LayerRule):
    description = ("dialect (py-faster-rcnn, OpenCV): region proposals from anchor scores and "
                   "deltas, suppressed; rois R x 5")
    family = "other"
    bottoms = (3, 3)  # objectness probabilities, box deltas, im_info
    tops = (1, 2)  # rois, and optionally their scores
    params = ("proposal_param", "python_param")
    bounded_tops = True  # at most post_nms_topn regions; the data decides how many
    image_info_bottom = 2  # im_info defaults to the image's height, width and scale 1

    def check_params(self, layer):
        try:
            found = settings(layer)
        except ValueError as exc:
            yield Issue(str(exc), ("python_param", "param_str"))
            return
        for name in ("feat_stride", "base_size"):
            if getattr(found, name) <= 0:
                yield Issue(f"{name} must be positive", _P + (name,))
        if any(not v > 0 for v in found.ratios + found.scales):
            yield Issue("ratios and scales must be positive", _P)

    def top_shapes(self, layer, bottoms):
        scores, deltas, info = bottoms
        found = settings(layer, training=layer.phase == 0 and layer.HasField("phase"))
        anchors = len(found.ratios) * len(found.scales)
        if len(scores) != 4 or scores[1] != 2 * anchors:
            raise ShapeIssue(f"scores must be 1 x {2 * anchors} x H x W (background, then object, "
                             f"per anchor); got {fmt(scores)}", ("bottom", 0))
        if len(deltas) != 4 or deltas[1] != 4 * anchors or deltas[2:] != scores[2:]:
            raise ShapeIssue(f"deltas must be 1 x {4 * anchors} x {scores[2]} x {scores[3]}; got "
                             f"{fmt(deltas)}", ("bottom", 1))
        if info[-1] < 3:
            raise ShapeIssue(f"im_info must hold height, width and scale; got {fmt(info)}",
                             ("bottom", 2))
        most = found.post_nms_topn or scores[2] * scores[3] * anchors
        return [(most, 5), (most, 1)][: len(layer.top)]  # at most; fewer at run time

    def summary(self, layer):
        try:
            found = settings(layer)
        except ValueError:
            return ""
        return f"stride {found.feat_stride}, top {found.post_nms_topn}"

    def lower(self, layer, ctx):
        found = settings(layer, ctx.training)
        return runtime("Proposal", feat_stride=found.feat_stride, base_size=found.base_size,
                       min_size=found.min_size, ratios=found.ratios, scales=found.scales,
                       pre_nms_topn=found.pre_nms_topn, post_nms_topn=found.post_nms_topn,
                       nms_thresh=found.nms_thresh, with_scores=len(layer.top) > 1)
