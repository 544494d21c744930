"""Caffe's `RNN` layer (Elman recurrent net over T time steps: tanh hidden state, tanh output).

Runs as `netdef.runtime.RNN`. Tested by `tests/test_rules.py` (test_rule[RNN]), and in
`tests/test_sequence_region_layers.py`.
"""
from __future__ import annotations

from ._base import register
from ._recurrent import RecurrentRule


@register
class RNN(RecurrentRule):
    description = "Elman recurrent net over T time steps: tanh hidden state, tanh output"
    blob_names = ("input_weight", "input_bias", "static_weight", "hidden_weight",
                  "output_weight", "output_bias")
