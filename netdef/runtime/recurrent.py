"""RNN, LSTM and LSTMUnit with Caffe's blob layout, continuation masks and exposed states."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._caffe import per_item


class _Recurrent(nn.Module):
    """Caffe's unrolled RNN/LSTM: x is T x N x ..., cont is T x N (0 starts a sequence: the
    state is multiplied by cont_t before step t), an optional static input N x ... adds to
    every step. Without expose_hidden the state starts at zero on every call."""

    gates = 1
    state_count = 1

    def __init__(self, inputs: int, outputs: int, static_inputs: int, expose_hidden: bool):
        super().__init__()
        width = outputs * self.gates
        self.expose_hidden = expose_hidden
        self.input_weight = nn.Parameter(torch.empty(width, inputs))
        self.input_bias = nn.Parameter(torch.zeros(width))
        self.static_weight = nn.Parameter(torch.empty(width, static_inputs)) \
            if static_inputs else None
        self.hidden_weight = nn.Parameter(torch.empty(width, outputs))

    def forward(self, x, cont, *extra):
        static, states = (extra[0], extra[1:]) if len(extra) > self.expose_hidden * \
            self.state_count else (None, extra)
        steps, batch = x.shape[:2]
        projected = F.linear(x.flatten(2), self.input_weight, self.input_bias)
        if static is not None:
            projected = projected + F.linear(per_item(static), self.static_weight)
        width = self.hidden_weight.shape[1]
        if not states:
            states = tuple(x.new_zeros(1, batch, width) for _ in range(self.state_count))
        states = [state.reshape(batch, width) for state in states]
        outputs = []
        for t in range(steps):
            keep = cont[t].reshape(batch, 1).to(x.dtype)
            states, output = self.step(projected[t], keep, states)
            outputs.append(output)
        top = torch.stack(outputs)
        if self.expose_hidden:
            return (top, *(state.unsqueeze(0) for state in states))
        return top


class RNN(_Recurrent):
    """h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h [+ W_xh_static x_static]),
    o_t = tanh(W_ho h_t + b_o). Blobs: W_xh, b_h, [W_xh_static], W_hh, W_ho, b_o."""

    def __init__(self, inputs: int, outputs: int, static_inputs: int, expose_hidden: bool):
        super().__init__(inputs, outputs, static_inputs, expose_hidden)
        self.output_weight = nn.Parameter(torch.empty(outputs, outputs))
        self.output_bias = nn.Parameter(torch.zeros(outputs))

    def step(self, projected, keep, states):
        hidden = torch.tanh(F.linear(keep * states[0], self.hidden_weight) + projected)
        return [hidden], torch.tanh(F.linear(hidden, self.output_weight, self.output_bias))


def lstm_unit(cell, gates, keep):
    """Caffe's LSTMUnit: gates are (i, f, o, g) blocks; c = keep * f * c_prev + i * g,
    h = o * tanh(c)."""
    i, f, o, g = gates.chunk(4, -1)
    cell = keep * torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
    return cell, torch.sigmoid(o) * torch.tanh(cell)


class LSTM(_Recurrent):
    """Gates W_hc (cont_t h_{t-1}) + W_xc x_t + b_c [+ W_xc_static x_static] feed Caffe's
    LSTMUnit. Blobs: W_xc, b_c, [W_xc_static], W_hc. Exposed states are (h, c) in and out."""

    gates = 4
    state_count = 2

    def step(self, projected, keep, states):
        hidden, cell = states
        gates = F.linear(keep * hidden, self.hidden_weight) + projected
        cell, hidden = lstm_unit(cell, gates, keep)
        return [hidden, cell], hidden


class LSTMUnit(nn.Module):
    """One LSTM step on 1 x N x H cells, 1 x N x 4H gates and a 1 x N continuation."""

    def forward(self, cell, gates, cont):
        keep = cont.reshape(*cont.shape, 1).to(gates.dtype)
        return lstm_unit(cell, gates, keep)
