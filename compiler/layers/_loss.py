"""Loss layers: a scalar top (optional, as in Caffe) and a label whose count must fit."""
from __future__ import annotations

from netdef.proto import netdef_pb2 as pb

from ._base import LayerRule, ShapeIssue, canonical_axis, count, fmt


class LossRule(LayerRule):
    family = "loss"
    loss_weight = 1.0  # Caffe's LossLayer default
    bottoms = (2, 2)
    tops = (0, 1)
    params = ("loss_param",)

    def top_shapes(self, layer, bottoms):
        self.check_label(layer, bottoms)
        return [()] + self.extra_tops(layer, bottoms)[: len(layer.top) - 1]

    def check_label(self, layer, bottoms) -> None:
        pass

    def extra_tops(self, layer, bottoms) -> list:
        return []


def loss_settings(layer) -> dict:
    """ignore_label (None when unset) and the normalization mode's name, legacy `normalize`
    included (true: VALID, false: BATCH_SIZE), as Caffe's LossLayer reads them."""
    param = layer.loss_param
    mode = pb.LossParameter.NormalizationMode.Name(param.normalization)
    if not param.HasField("normalization") and param.HasField("normalize"):
        mode = "VALID" if param.normalize else "BATCH_SIZE"
    ignore = param.ignore_label if param.HasField("ignore_label") else None
    return {"ignore_label": ignore, "normalization": mode}


def labels_per_position(prediction, label, axis: int, label_bottom: int = 1) -> None:
    """Caffe's rule for classification losses: one label per position outside `axis`."""
    axis = canonical_axis(axis, len(prediction))
    expected = count(prediction, 0, axis) * count(prediction, axis + 1)
    if count(label) != expected:
        raise ShapeIssue(f"label ({fmt(label)}) has {count(label)} values, but prediction "
                         f"{fmt(prediction)} needs one per position outside axis {axis}: {expected}",
                         ("bottom", label_bottom))


def labels_per_item(prediction, label) -> None:
    if count(label) != prediction[0]:
        raise ShapeIssue(f"label ({fmt(label)}) must hold one value per item ({prediction[0]})",
                         ("bottom", 1))


def same_count(prediction, target, start: int = 0) -> None:
    if count(prediction, start) != count(target, start):
        raise ShapeIssue(f"bottoms {fmt(prediction)} and {fmt(target)} must have the same number of "
                         "values" + (" per item" if start else ""), ("bottom", 1))
