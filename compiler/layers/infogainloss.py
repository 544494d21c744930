from __future__ import annotations

from ._base import Issue, register
from ._loss import LossRule, labels_per_position, loss_settings
from ._lowering import LoweringIssue, runtime


@register
class InfogainLoss(LossRule):
    type_name = "InfogainLoss"
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
        if len(layer.bottom) < 3:
            raise LoweringIssue("the infogain matrix must come as bottom 2; reading it from "
                                "infogain_loss_param.source is not supported yet",
                                ("infogain_loss_param", "source"))
        axis = layer.infogain_loss_param.axis % len(ctx.bottom_shapes[0])
        return runtime("InfogainLoss", axis=axis, **loss_settings(layer))
