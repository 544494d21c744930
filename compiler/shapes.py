"""Shape inference: each rule's Caffe-exact shape rule, in layer order.

Shapes are known or unknown (None) per blob: a data layer whose shape lives in
a database, or a Python layer, leaves its tops unknown unless the user sizes
them, and everything downstream stays unknown without complaint. Problems are
reported only where the shapes are known.
"""
from __future__ import annotations

from netdef.errors import Problem, ShapeError, UsageError, did_you_mean

from .ir import Layer, Net
from .layers import ShapeIssue


def infer_shapes(net: Net, user_inputs: dict[str, tuple] | None = None) -> list[Problem]:
    user_inputs = dict(user_inputs or {})
    check_user_inputs(net, user_inputs)
    problems: list[Problem] = []
    for layer in net.layers:
        shapes, problem = layer_top_shapes(net, layer, user_inputs)
        if problem is not None:
            problems.append(problem)
        for blob_id, shape in zip(layer.tops, shapes):
            net.blobs[blob_id].shape = tuple(shape) if shape is not None else None
    return problems


def check_user_inputs(net: Net, user_inputs: dict[str, tuple]) -> None:
    names = [net.blobs[blob_id].name for blob_id in net.input_blobs]
    for name, shape in user_inputs.items():
        if name not in names:
            known = ", ".join(names) or "none"
            raise UsageError(f"--input {name}: the net has no input blob '{name}'"
                             f"{did_you_mean(name, names)}; its inputs: {known}")
        if not shape or any(int(dim) <= 0 for dim in shape):
            raise UsageError(f"--input {name}: dimensions must be positive integers, got {shape}")


def layer_top_shapes(net: Net, layer: Layer, user_inputs) -> tuple[list, Problem | None]:
    unknown = [None] * len(layer.tops)
    rule = layer.rule
    if rule is None:
        return unknown, None
    try:
        if rule.is_input:
            shapes = rule.input_shapes(layer.param)
            shapes = [user_inputs.get(net.blobs[blob_id].name, shape)
                      for blob_id, shape in zip(layer.tops, shapes)]
            return shapes + unknown[len(shapes):], None
        bottoms = [net.blobs[blob_id].shape for blob_id in layer.bottoms]
        if len(bottoms) != len(layer.param.bottom) or any(shape is None for shape in bottoms):
            return unknown, None
        shapes = rule.top_shapes(layer.param, bottoms)
    except ShapeIssue as issue:
        return unknown, net.problem(issue.issue.kind, str(issue), layer, issue.issue.field)
    except (ArithmeticError, ValueError, IndexError) as exc:  # parameters no rule anticipated
        return unknown, net.problem(ShapeError, f"cannot compute output shapes ({exc})", layer)
    return list(shapes) + unknown[len(shapes):], None
