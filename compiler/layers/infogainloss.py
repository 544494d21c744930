"""Caffe's `InfogainLoss` layer (softmax + log loss weighted by an infogain matrix H (file or
bottom 2)).

Runs as `netdef.runtime.loss.InfogainLoss`. Tested by `tests/test_rules.py`
(test_rule[InfogainLoss]), and in `tests/test_losses.py`.
"""
from __future__ import annotations

from ._base import Issue, register
from ._loss import LossRule, labels_per_position, loss_settings
from ..modules import LoweringIssue, runtime


@register
class InfogainLoss(LossRule):
    description = "softmax + log loss weighted by an infogain matrix H (file or bottom 2)"
    bottoms = (2, 3)
    tops = (0, 2)
    params = ("loss_param", "infogain_loss_param")

    def check_params(self, layer):
        if len(layer.bottom) == 2 and not layer.infogain_loss_param.source:
            yield Issue("give the infogain matrix as a third bottom or infogain_loss_param.source",
                        ("infogain_loss_param",))

    def check_label(self, layer, bottoms):
        labels_per_position(bottoms[0], bottoms[1], layer.infogain_loss_param.axis)

    def extra_tops(self, layer, bottoms):
        return [bottoms[0]]

    def lower(self, layer, ctx):
        axis = layer.infogain_loss_param.axis % len(ctx.bottom_shapes[0])
        matrix = None
        if len(layer.bottom) < 3:
            matrix = self._matrix(ctx.find_file(layer.infogain_loss_param.source),
                                  ctx.bottom_shapes[0][axis])
        return runtime("InfogainLoss", axis=axis, matrix=matrix, **loss_settings(layer))

    @staticmethod
    def _matrix(path: str, classes: int) -> list:
        """H from the binaryproto (read once, at load, as Caffe does in LayerSetUp)."""
        from ..weights import WireError, read_blob_file
        where = ("infogain_loss_param", "source")
        try:
            # a classes x classes matrix, as floats or doubles, and the blob's framing
            blob = read_blob_file(path, limit=8 * classes * classes + 4096)
        except OSError as exc:
            raise LoweringIssue(f"cannot read the infogain matrix {path}: "
                                f"{exc.strerror or exc}", where) from None
        except WireError as exc:
            raise LoweringIssue(f"{path} is not a BlobProto: {exc}", where) from None
        if blob.size != classes * classes:
            raise LoweringIssue(f"{path} holds {blob.size} values; a {classes} x {classes} "
                                "infogain matrix needs " + str(classes * classes), where)
        return blob.reshape(classes, classes).astype(float).tolist()
