"""Shape inference: each rule's Caffe-exact shape rule, in layer order.

Shapes are known or unknown (None) per blob: a data layer whose shape lives in
a database, or a Python layer, leaves its tops unknown unless the user sizes
them, and everything downstream stays unknown without complaint. Problems are
reported only where the shapes are known.
"""
from __future__ import annotations

import math

from netdef.errors import ParameterError, Problem, ShapeError, UsageError, did_you_mean

from .ir import Layer, Net
from .layers import ShapeIssue
from .layers._base import fmt

# Caffe's Blob::Reshape refuses a blob of more values (CHECK_LE(count_, INT_MAX)); it also
# keeps every size netdef computes within what torch can allocate and index.
MAX_BLOB_COUNT = 2**31 - 1


def infer_shapes(net: Net, user_inputs: dict[str, tuple] | None = None) -> list[Problem]:
    user_inputs = dict(user_inputs or {})
    check_user_inputs(net, user_inputs)
    problems: list[Problem] = []
    for layer in net.layers:
        shapes, problem = layer_top_shapes(net, layer, user_inputs)
        problem = problem or size_problem(net, layer, shapes)
        if problem is not None:
            problems.append(problem)
            shapes = [None] * len(layer.tops)
        for blob_id, shape in zip(layer.tops, shapes):
            net.blobs[blob_id].shape = tuple(shape) if shape is not None else None
    return problems


def check_user_inputs(net: Net, user_inputs: dict[str, tuple]) -> None:
    names = [net.blobs[blob_id].name for blob_id in net.input_blobs]
    names += [net.blobs[blob_id].name for layer in net.layers if layer.rule is None
              for blob_id in layer.tops]  # an unknown type's tops: the user may size them
    for name, shape in user_inputs.items():
        if name not in names:
            known = ", ".join(names) or "none"
            raise UsageError(f"--input {name}: the net has no input blob '{name}'"
                             f"{did_you_mean(name, names)}; its inputs: {known}")
        if not shape or any(int(dim) <= 0 for dim in shape):
            raise UsageError(f"--input {name}: dimensions must be positive integers, got {shape}")


def size_problem(net: Net, layer: Layer, top_shapes: list) -> Problem | None:
    """Blobs, learned or computed, that Caffe could not hold: a negative dimension, or more
    than MAX_BLOB_COUNT values."""
    named = [(f"top '{net.blobs[blob_id].name}'", shape, ShapeError)
             for blob_id, shape in zip(layer.tops, top_shapes)]
    bottoms = [net.blobs[blob_id].shape for blob_id in layer.bottoms]
    if layer.rule is not None and bottoms and all(shape is not None for shape in bottoms):
        try:
            weights = layer.rule.learned_shapes(layer.param, bottoms)
        except (ShapeIssue, ArithmeticError, ValueError, IndexError):
            weights = []  # parameters the shape rule has already reported
        named += [(f"learned blob {index}", shape, ParameterError)
                  for index, shape in enumerate(weights)]
    for what, shape, kind in named:
        if shape is None:
            continue
        if any(dim < 0 for dim in shape):
            return net.problem(kind, f"{what} would have shape {fmt(shape)}: dimensions cannot "
                               "be negative", layer)
        if math.prod(shape) > MAX_BLOB_COUNT:
            return net.problem(kind, f"{what} would have shape {fmt(shape)}, "
                               f"{math.prod(shape):.3g} values: more than Caffe's limit of "
                               f"2^31 - 1 per blob", layer)
    return None


def layer_top_shapes(net: Net, layer: Layer, user_inputs) -> tuple[list, Problem | None]:
    unknown = [None] * len(layer.tops)
    rule = layer.rule
    if rule is None:  # an unknown type: its tops are as the user sizes them, else unknown
        return [user_inputs.get(net.blobs[blob_id].name) for blob_id in layer.tops], None
    try:
        if rule.is_input:
            shapes = rule.input_shapes(layer.param)
            shapes = [user_inputs.get(net.blobs[blob_id].name, shape)
                      for blob_id, shape in zip(layer.tops, shapes)]
            return shapes + unknown[len(shapes):], None
        bottoms = [net.blobs[blob_id].shape for blob_id in layer.bottoms]
        low, high = rule.bottoms
        arity_ok = low <= len(bottoms) and (high is None or len(bottoms) <= high)
        if not arity_ok or len(bottoms) != len(layer.param.bottom) or \
                any(shape is None for shape in bottoms):
            return unknown, None  # validate reports a wrong count of bottoms
        shapes = rule.top_shapes(layer.param, bottoms)
    except ShapeIssue as issue:
        return unknown, net.problem(issue.issue.kind, str(issue), layer, issue.issue.field)
    except (ArithmeticError, ValueError, IndexError) as exc:  # parameters no rule anticipated
        return unknown, net.problem(ShapeError, f"cannot compute output shapes ({exc})", layer)
    return list(shapes) + unknown[len(shapes):], None
