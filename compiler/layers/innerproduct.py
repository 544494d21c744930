"""Caffe's `InnerProduct` layer (fully connected: flattens from axis (default 1), optional
transposed weights).

Runs as `netdef.runtime.linear.InnerProduct`. Tested by `tests/test_rules.py`
(test_rule[InnerProduct]), and in `tests/compiler/layers/test_shape_rules.py`,
`tests/compiler/test_weights.py`, `tests/test_opencv_shapes.py`.
"""
from __future__ import annotations

from ._base import Issue, LayerRule, canonical_axis, count, register
from ..modules import runtime

_P = ("inner_product_param",)


@register
class InnerProduct(LayerRule):
    description = "fully connected: flattens from axis (default 1), optional transposed weights"
    family = "conv"
    params = ("inner_product_param",)

    def check_params(self, layer):
        param = layer.inner_product_param
        if not param.HasField("num_output"):
            yield Issue("num_output is required", _P)
        elif param.num_output == 0:
            yield Issue("num_output must be positive, got 0", _P + ("num_output",))

    def top_shapes(self, layer, bottoms):
        param = layer.inner_product_param
        axis = canonical_axis(param.axis, len(bottoms[0]), _P + ("axis",))
        return [bottoms[0][:axis] + (param.num_output,)]

    def learned_shapes(self, layer, bottoms):
        param = layer.inner_product_param
        inputs = count(bottoms[0], param.axis % len(bottoms[0]))
        weight = (inputs, param.num_output) if param.transpose else (param.num_output, inputs)
        return [weight, (param.num_output,)][:1 + param.bias_term]

    def flops(self, layer, bottoms, tops):
        """Two per multiply-add: every output reads every input of its item."""
        return 2 * count(tops[0]) * count(bottoms[0], layer.inner_product_param.axis
                                          % len(bottoms[0]))

    def summary(self, layer):
        return str(layer.inner_product_param.num_output)

    def lower(self, layer, ctx):
        param = layer.inner_product_param
        shape = ctx.bottom_shapes[0]
        axis = param.axis % len(shape)
        return runtime("InnerProduct", ("weight", "bias") if param.bias_term else ("weight",),
                       axis=axis, inputs=count(shape, axis), outputs=param.num_output,
                       bias=param.bias_term, transpose=param.transpose)

    def fillers(self, layer):
        param = layer.inner_product_param
        return ((param.weight_filler, 0.0), (param.bias_filler, 0.0))[:1 + param.bias_term]
