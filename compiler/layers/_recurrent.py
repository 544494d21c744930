"""RNN and LSTM: a T x N x ... sequence, a T x N continuation mask, an optional static input."""
from __future__ import annotations

from ._base import Issue, LayerRule, ShapeIssue, fmt


class RecurrentRule(LayerRule):
    family = "conv"
    bottoms = (2, 3)
    tops = (1, 1)
    params = ("recurrent_param",)

    def check_params(self, layer):
        if layer.recurrent_param.num_output == 0:
            yield Issue("num_output is required and must be positive", ("recurrent_param",))

    def top_shapes(self, layer, bottoms):
        sequence, cont = bottoms[0], bottoms[1]
        if len(sequence) < 2 or cont != sequence[:2]:
            raise ShapeIssue(f"bottom 1 (continuation, {fmt(cont)}) must be T x N of bottom 0 "
                             f"({fmt(sequence)})", ("bottom", 1))
        return [sequence[:2] + (layer.recurrent_param.num_output,)]
