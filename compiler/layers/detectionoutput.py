"""SSD's `DetectionOutput` layer (dialect (SSD): decodes every prior's box, suppresses per
class, keeps the best per image: 1 x 1 x K x 7 rows).

Runs as `netdef.runtime.detection.DetectionOutput`. Tested by `tests/test_rules.py`
(test_rule[DetectionOutput]), and in `tests/test_detection.py`, `tests/test_forks.py`.
"""
from __future__ import annotations

from netdef.proto import netdef_pb2 as pb

from ._base import Issue, LayerRule, ShapeIssue, count, fmt, register
from ..modules import runtime

_P = ("detection_output_param",)


@register
class DetectionOutput(LayerRule):
    description = ("dialect (SSD): decodes every prior's box, suppresses per class, keeps the best "
                   "per image: 1 x 1 x K x 7 rows")
    family = "other"
    bottoms = (3, 3)  # locations, confidences, priors
    params = ("detection_output_param",)
    output_kind = "detections"  # `netdef run` draws them and writes them as JSON

    def check_params(self, layer):
        param = layer.detection_output_param
        if not param.num_classes:
            yield Issue("num_classes is required and must be positive", _P)
        elif param.background_label_id >= int(param.num_classes):
            yield Issue(f"background_label_id {param.background_label_id} is not below "
                        f"num_classes {param.num_classes}", _P + ("background_label_id",))
        nms = param.nms_param
        if not 0 <= nms.nms_threshold <= 1:
            yield Issue(f"nms_threshold must lie in [0, 1], got {nms.nms_threshold:g}",
                        _P + ("nms_param", "nms_threshold"))
        if not 0 < nms.eta <= 1:
            yield Issue(f"eta must lie in (0, 1], got {nms.eta:g}", _P + ("nms_param", "eta"))
        if param.code_type not in pb.PriorBoxParameter.CodeType.values():
            yield Issue(f"code_type {param.code_type} is not CORNER, CENTER_SIZE or CORNER_SIZE",
                        _P + ("code_type",))

    def top_shapes(self, layer, bottoms):
        param = layer.detection_output_param
        loc, conf, priors = bottoms
        if len(priors) < 3 or priors[-2] != 2 or priors[-1] % 4:
            raise ShapeIssue(f"priors must be 1 x 2 x (4 x priors), as PriorBox makes them; got "
                             f"{fmt(priors)}", ("bottom", 2))
        boxes = priors[-1] // 4
        loc_classes = 1 if param.share_location else param.num_classes
        if count(loc, 1) != boxes * loc_classes * 4:
            raise ShapeIssue(f"locations ({fmt(loc)}) must hold {boxes * loc_classes * 4} values "
                             f"per image: 4 per prior{'' if param.share_location else ' and class'}",
                             ("bottom", 0))
        if count(conf, 1) != boxes * param.num_classes or conf[0] != loc[0]:
            raise ShapeIssue(f"confidences ({fmt(conf)}) must hold {boxes * param.num_classes} "
                             f"values per image: one per prior and class", ("bottom", 1))
        return [None]  # 1 x 1 x K x 7: the data decides K

    def summary(self, layer):
        param = layer.detection_output_param
        return f"{param.num_classes} classes, nms {param.nms_param.nms_threshold:g}"

    def lower(self, layer, ctx):
        param = layer.detection_output_param
        nms = param.nms_param
        return runtime("DetectionOutput", num_classes=param.num_classes,
                       share_location=param.share_location,
                       background_label_id=param.background_label_id,
                       code_type=param.code_type,
                       variance_encoded_in_target=param.variance_encoded_in_target,
                       keep_top_k=param.keep_top_k,
                       confidence_threshold=(param.confidence_threshold
                                             if param.HasField("confidence_threshold")
                                             else -3.4028234663852886e38),
                       nms_threshold=nms.nms_threshold,
                       top_k=nms.top_k if nms.HasField("top_k") else -1, eta=nms.eta)
