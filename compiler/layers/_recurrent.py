"""RNN and LSTM: a T x N x ... sequence, a T x N continuation mask, an optional static
input N x ..., and with expose_hidden the initial states in and the final states out."""
from __future__ import annotations

from ._base import Issue, LayerRule, ShapeIssue, count, fmt
from ..modules import runtime

_P = ("recurrent_param",)


class RecurrentRule(LayerRule):
    family = "conv"
    bottoms = (2, 5)
    tops = (1, 3)
    params = ("recurrent_param",)
    states = 1  # recurrent state blobs (h; LSTM: h and c)
    gates = 1  # hidden-to-hidden width in multiples of num_output
    blob_names = ()  # the module's tensors in Caffe's order, static weight marked None

    def check_params(self, layer):
        if layer.recurrent_param.num_output == 0:
            yield Issue("num_output is required and must be positive", _P)
        exposed = self.states if layer.recurrent_param.expose_hidden else 0
        if len(layer.top) != 1 + exposed:
            yield Issue(f"takes {1 + exposed} top(s) with expose_hidden "
                        f"{str(bool(exposed)).lower()}, got {len(layer.top)}", ("top",))
        if not 2 + exposed <= len(layer.bottom) <= 3 + exposed:
            yield Issue(f"takes x, cont, an optional static input"
                        f"{', and the initial states' if exposed else ''}: "
                        f"{2 + exposed} or {3 + exposed} bottoms, got {len(layer.bottom)}",
                        ("bottom",))

    def top_shapes(self, layer, bottoms):
        sequence, cont = bottoms[0], bottoms[1]
        if len(sequence) < 3 or cont != sequence[:2]:
            raise ShapeIssue(f"bottom 1 (continuation, {fmt(cont)}) must be T x N of bottom 0 "
                             f"({fmt(sequence)}, T x N x ...)", ("bottom", 1))
        outputs = layer.recurrent_param.num_output
        state = (1, sequence[1], outputs)
        for position, shape in enumerate(bottoms[len(bottoms) - self._exposed(layer):]):
            if tuple(shape) != state:
                raise ShapeIssue(f"initial state {position} must be {fmt(state)}, got "
                                 f"{fmt(shape)}", ("bottom", len(bottoms) - self._exposed(layer)
                                                   + position))
        return [sequence[:2] + (outputs,)] + [state] * self._exposed(layer)

    def learned_shapes(self, layer, bottoms):
        n, width = layer.recurrent_param.num_output, self.gates * layer.recurrent_param.num_output
        shapes = {"input_weight": (width, count(bottoms[0], 2)), "input_bias": (width,),
                  "hidden_weight": (width, n), "output_weight": (n, n), "output_bias": (n,)}
        if self._has_static(layer):
            shapes["static_weight"] = (width, count(bottoms[2], 1))
        return [shapes[name] for name in self.blob_names if name in shapes]

    def flops(self, layer, bottoms, tops):
        """Two per multiply-add of the weight matrices, at every time step."""
        weights = self.learned_shapes(layer, bottoms)
        return 2 * bottoms[0][0] * bottoms[0][1] * sum(count(w) for w in weights if len(w) == 2)

    def _exposed(self, layer) -> int:
        return self.states if layer.recurrent_param.expose_hidden else 0

    def _has_static(self, layer) -> bool:
        return len(layer.bottom) == 3 + self._exposed(layer)

    def lower(self, layer, ctx):
        param = layer.recurrent_param
        static = count(ctx.bottom_shapes[2], 1) if self._has_static(layer) else 0
        names = tuple(name for name in self.blob_names if name != "static_weight" or static)
        return runtime(self.type_name, names, inputs=count(ctx.bottom_shapes[0], 2),
                       outputs=param.num_output, static_inputs=static,
                       expose_hidden=param.expose_hidden)

    def fillers(self, layer):
        param = layer.recurrent_param
        by_name = {"input_bias": param.bias_filler, "output_bias": param.bias_filler}
        return tuple((by_name.get(name, param.weight_filler), 0.0) for name in self.blob_names
                     if name != "static_weight" or self._has_static(layer))

    def summary(self, layer):
        return str(layer.recurrent_param.num_output)
