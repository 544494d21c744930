"""Caffe's `LSTMUnit` layer (one LSTM step: previous cell 1 x N x H, gates 1 x N x 4H (i, f, o, g),
cont 1 x N).

Runs as `netdef.runtime.recurrent.LSTMUnit`. Tested by `tests/test_rules.py`
(test_rule[LSTMUnit]), and in `tests/test_sequence_region_layers.py`.
"""
from __future__ import annotations

from ._base import LayerRule, ShapeIssue, fmt, register
from ..modules import runtime


@register
class LSTMUnit(LayerRule):
    description = "one LSTM step: previous cell 1 x N x H, gates 1 x N x 4H (i, f, o, g), cont 1 x N"
    family = "pointwise"
    bottoms = (3, 3)
    tops = (2, 2)

    def top_shapes(self, layer, bottoms):
        cell, gates, cont = bottoms
        if len(cell) != 3 or tuple(gates) != cell[:2] + (4 * cell[2],):
            raise ShapeIssue(f"gates must be {fmt(cell[:2] + (4 * cell[-1],))} for cells "
                             f"{fmt(cell)}, got {fmt(gates)}", ("bottom", 1))
        if tuple(cont) != cell[:2]:
            raise ShapeIssue(f"cont must be {fmt(cell[:2])}, got {fmt(cont)}", ("bottom", 2))
        return [cell, cell]

    def lower(self, layer, ctx):
        return runtime("LSTMUnit")
