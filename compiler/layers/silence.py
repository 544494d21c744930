"""Caffe's `Silence` layer (consumes bottoms so they are not net outputs; no tops).

Computes nothing at run time. Tested by `tests/test_rules.py` (test_rule[Silence]), and in
`tests/test_sequence_region_layers.py`.
"""
from __future__ import annotations

from ._base import register
from ._sink import SinkRule


@register
class Silence(SinkRule):
    description = "consumes bottoms so they are not net outputs; no tops"

    def lower(self, layer, ctx):
        return None
