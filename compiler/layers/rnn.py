from __future__ import annotations

from ._base import register
from ._recurrent import RecurrentRule


@register
class RNN(RecurrentRule):
    description = "Elman recurrent net over T time steps: tanh hidden state, tanh output"
    blob_names = ("input_weight", "input_bias", "static_weight", "hidden_weight",
                  "output_weight", "output_bias")
