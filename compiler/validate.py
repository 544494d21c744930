"""Structural and parameter checks: each rule's arity and parameters, in one pass."""
from __future__ import annotations

from netdef.errors import GraphError, ParameterError, Problem

from .ir import Layer, Net

# Parameter fields every layer may carry, whatever its type.
_COMMON_PARAMS = {"transform_param", "loss_param"}


def validate(net: Net) -> list[Problem]:
    problems: list[Problem] = []
    for layer in net.layers:
        if layer.rule is None:
            continue
        problems += arity_problems(net, layer)
        for issue in layer.rule.check_params(layer.param):
            problems.append(net.problem(issue.kind, issue.message, layer, issue.field, issue.warning))
        problems += unused_param_warnings(net, layer)
        problems += per_blob_list_problems(net, layer)
    return problems


def _count_text(low: int, high: int | None, what: str) -> str:
    plural = lambda n: f"{n} {what}" + ("" if n == 1 else "s")  # noqa: E731
    if high == low:
        return f"exactly {plural(low)}" if low else f"no {what}s"
    if high is None:
        return f"at least {plural(low)}"
    return f"{low} to {high} {what}s"


def arity_problems(net: Net, layer: Layer) -> list[Problem]:
    rule, param = layer.rule, layer.param
    problems = []
    for what, given, (low, high) in (("bottom", len(param.bottom), rule.bottoms),
                                     ("top", len(param.top), rule.tops)):
        too_many = high is not None and given > high
        if given < low or too_many:
            where = (what, high) if too_many else ()  # the first extra one, or the layer
            problems.append(net.problem(
                GraphError, f"{layer.type} takes {_count_text(low, high, what)}, got {given}",
                layer, where))
    if rule.tops_match_bottoms and len(param.top) != len(param.bottom):
        problems.append(net.problem(
            GraphError, f"{layer.type} needs one top per bottom; got {len(param.bottom)} bottoms "
            f"and {len(param.top)} tops", layer))
    return problems


def unused_param_warnings(net: Net, layer: Layer) -> list[Problem]:
    warnings = []
    for fd, _ in layer.param.ListFields():
        name = fd.name
        if name.endswith("_param") and name not in layer.rule.params and name not in _COMMON_PARAMS:
            warnings.append(net.problem(ParameterError, f"{name} is ignored by {layer.type} layers",
                                        layer, (name,), warning=True))
    return warnings


def per_blob_list_problems(net: Net, layer: Layer) -> list[Problem]:
    """loss_weight (one per top) and propagate_down (one per bottom), as Caffe checks them."""
    param, problems = layer.param, []
    if param.loss_weight and len(param.loss_weight) != len(param.top):
        problems.append(net.problem(ParameterError, f"{len(param.loss_weight)} loss_weight values for "
                                    f"{len(param.top)} tops; give one per top", layer,
                                    ("loss_weight", 0)))
    if param.propagate_down and len(param.propagate_down) != len(param.bottom):
        problems.append(net.problem(ParameterError, f"{len(param.propagate_down)} propagate_down "
                                    f"values for {len(param.bottom)} bottoms; give one per bottom",
                                    layer, ("propagate_down", 0)))
    return problems
