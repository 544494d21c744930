"""Caffe's `Reshape` layer (new shape for axes [axis, axis+num_axes); 0 copies a dim, -1 infers
one).

Runs as `netdef.runtime.shape.Reshape`. Tested by `tests/test_rules.py` (test_rule[Reshape]),
and in `tests/compiler/layers/test_shape_rules.py`, `tests/compiler/test_receptive.py`.
"""
from __future__ import annotations

from ._base import LayerRule, ShapeIssue, count, fmt, register
from ..modules import runtime

_P = ("reshape_param",)


@register
class Reshape(LayerRule):
    description = "new shape for axes [axis, axis+num_axes); 0 copies a dim, -1 infers one"
    family = "reshape"
    params = ("reshape_param",)

    def top_shapes(self, layer, bottoms):
        shape = bottoms[0]
        param = layer.reshape_param
        start = param.axis + len(shape) + 1 if param.axis < 0 else param.axis
        if not 0 <= start <= len(shape):
            raise ShapeIssue(f"axis {param.axis} is out of range", _P + ("axis",))
        end = len(shape) if param.num_axes == -1 else start + param.num_axes
        if param.num_axes < -1 or end > len(shape):
            raise ShapeIssue(f"num_axes {param.num_axes} is out of range", _P + ("num_axes",))
        dims = list(param.shape.dim)
        if dims.count(-1) > 1:
            raise ShapeIssue("at most one dim may be -1", _P + ("shape",))
        new = []
        for i, dim in enumerate(dims):
            if dim == 0:
                if start + i >= len(shape):
                    raise ShapeIssue(f"dim {i} is 0 (copy) but bottom has no axis {start + i}",
                                     _P + ("shape",))
                dim = shape[start + i]
            elif dim < -1:
                raise ShapeIssue(f"dim {dim} is invalid; use positive sizes, 0 or -1", _P + ("shape",))
            new.append(dim)
        top = list(shape[:start]) + new + list(shape[end:])
        if -1 in top:
            known = count([d for d in top if d != -1])
            if known == 0 or count(shape) % known:
                raise ShapeIssue(f"cannot infer the -1 dim: {count(shape)} elements do not divide "
                                 f"by {known}", _P + ("shape",))
            top[top.index(-1)] = count(shape) // known
        if count(top) != count(shape):
            raise ShapeIssue(f"new shape {fmt(top)} has {count(top)} elements, bottom "
                             f"{fmt(shape)} has {count(shape)}", _P + ("shape",))
        return [tuple(top)]

    def spatial_map(self, layer, ctx):
        """Positions survive when the spatial axes come out as they went in."""
        bottom, top = ctx.bottoms[0].shape, ctx.top_shapes[0]
        if bottom is not None and top is not None and len(bottom) == len(top) > 2 \
                and bottom[2:] == top[2:]:
            return ctx.passthrough(1)
        return [ctx.ended()]

    def lower(self, layer, ctx):
        param = layer.reshape_param
        ndim = len(ctx.bottom_shapes[0])
        start = param.axis + ndim + 1 if param.axis < 0 else param.axis
        end = None if param.num_axes == -1 else start + param.num_axes
        return runtime("Reshape", start=start, end=end, dims=tuple(param.shape.dim))
