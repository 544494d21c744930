"""Caffe's `LSTM` layer (long short-term memory over T time steps (Caffe's unrolled LSTMUnit net)).

Runs as `netdef.runtime.LSTM`. Tested by `tests/test_rules.py` (test_rule[LSTM]), and in
`tests/test_sequence_region_layers.py`.
"""
from __future__ import annotations

from ._base import register
from ._recurrent import RecurrentRule


@register
class LSTM(RecurrentRule):
    description = "long short-term memory over T time steps (Caffe's unrolled LSTMUnit net)"
    states = 2
    gates = 4  # input, forget, output, candidate
    blob_names = ("input_weight", "input_bias", "static_weight", "hidden_weight")
