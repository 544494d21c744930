"""Scale and Bias: a second operand (bottom 1 or a learned blob) spanning some axes of bottom 0."""
from __future__ import annotations

from ._base import LayerRule, ShapeIssue, canonical_axis, fmt


class BroadcastRule(LayerRule):
    family = "pointwise"
    bottoms = (1, 2)

    def param(self, layer):
        raise NotImplementedError

    def top_shapes(self, layer, bottoms):
        data = bottoms[0]
        param = self.param(layer)
        name = self.params[0]
        if len(bottoms) == 2:
            operand = bottoms[1]
            axis = 0 if not operand else canonical_axis(param.axis, len(data), (name, "axis"))
            if tuple(data[axis:axis + len(operand)]) != tuple(operand):
                raise ShapeIssue(f"bottom 1 ({fmt(operand)}) must equal bottom 0's axes {axis}.. "
                                 f"({fmt(data[axis:axis + len(operand)])})", ("bottom", 1))
        else:
            axis = canonical_axis(param.axis, len(data), (name, "axis"))
            if param.num_axes < -1 or (param.num_axes >= 0 and axis + param.num_axes > len(data)):
                raise ShapeIssue(f"num_axes {param.num_axes} runs past bottom 0 ({fmt(data)})",
                                 (name, "num_axes"))
        return [data]

    def spatial_map(self, layer, ctx):
        return [ctx.merged()]

    def operand(self, layer, bottoms) -> tuple[int, tuple]:
        """(axis, shape) of the second operand, learned or bottom 1."""
        data = bottoms[0]
        param = self.param(layer)
        if len(bottoms) == 2:
            operand = tuple(bottoms[1])
            return (0 if not operand else param.axis % len(data)), operand
        axis = param.axis % len(data)
        end = len(data) if param.num_axes == -1 else axis + param.num_axes
        return axis, tuple(data[axis:end])
