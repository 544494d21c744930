"""Caffe's `Python` layer (a user's Python layer (never imported without --allow-python-layers)).

A data layer: its tops are graph inputs, fed in training by its data_source. Tested by
`tests/test_rules.py` (test_rule[Python]), and in `tests/compiler/layers/test_shape_rules.py`,
`tests/test_data.py`, `tests/test_more_layers.py`.
"""
from __future__ import annotations

from ._base import LayerRule, register


@register
class Python(LayerRule):
    """A user's Python class. netdef never imports it while checking: its tops
    are sized by the user (`--input NAME=...`), like data layers'."""

    description = "a user's Python layer (never imported without --allow-python-layers)"
    family = "data"
    bottoms = (0, None)
    tops = (0, None)
    params = ("python_param",)
    is_input = True

    def served_as(self, layer):
        """py-faster-rcnn's proposal layer is served built in by the Proposal rule."""
        from .proposal import PYTHON_LAYER
        if (layer.python_param.module, layer.python_param.layer) == PYTHON_LAYER:
            from . import registry
            return registry()["Proposal"]
        return self

    def data_source(self, layer, ctx):
        """The FCN project's VOC layer is served built in; other classes need the flag."""
        from netdef.training.data import python_source
        return python_source(layer, ctx)

    def top_shapes(self, layer, bottoms):
        return [None] * len(layer.top)
