"""The checking pipeline (parse, upgrade, IR, validate, shapes) and its report."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from netdef.errors import NetdefError, Problem, UnknownLayerType, UsageError, raise_if_errors
from netdef.proto import netdef_pb2 as pb

from .ir import Net, NetState, build_ir
from .layers import ShapeIssue
from .parse import parse_net
from .receptive import infer_fields, rf_json
from .shapes import infer_shapes
from .validate import validate

PHASES = {"TRAIN": pb.TRAIN, "TEST": pb.TEST}


def net_state(parsed_net: pb.NetParameter, phase: str, level: int | None,
              stages: tuple[str, ...] | None) -> NetState:
    """The state to filter with: the given phase, the file's level and stages unless given."""
    if phase.upper() not in PHASES:
        raise UsageError(f"phase must be TRAIN or TEST, not {phase!r}")
    file_state = parsed_net.state
    return NetState(PHASES[phase.upper()],
                    file_state.level if level is None else level,
                    tuple(file_state.stage) if stages is None else tuple(stages))


def check_net(source, *, phase: str = "TEST", inputs: dict | None = None, strict: bool = False,
              level: int | None = None, stages=None,
              solve_crops: bool = True) -> tuple[Net | None, list[Problem]]:
    """Run every check; returns the net (None if it could not be parsed) and all problems.

    Raises only for syntax errors and errors during upgrade (nothing after them
    can be trusted) and for usage errors.
    """
    parsed = parse_net(source, strict=strict)
    state = net_state(parsed.net, phase, level, stages)
    net, problems = build_ir(parsed, state)
    problems = list(parsed.warnings) + problems
    problems += validate(net)
    problems += infer_shapes(net, normalise_inputs(inputs))
    problems += infer_fields(net, solve_crops)
    problems.sort(key=lambda p: (p.line or 0))
    return net, problems


def checked_net(source, *, phase: str = "TEST", inputs: dict | None = None, strict: bool = False,
                level: int | None = None, stages=None, solve_crops: bool = True) -> Net:
    """The front every path shares: the net checked once, its warnings in `net.warnings`;
    a NetdefError holding every error otherwise."""
    net, problems = check_net(source, phase=phase, inputs=inputs, strict=strict, level=level,
                              stages=stages, solve_crops=solve_crops)
    raise_if_errors(problems)
    net.warnings = [p for p in problems if p.warning]
    return net


def partial_net(source, **settings) -> Net:
    """What `info` and `draw` analyse: the checked net, except that unknown layer types do
    not stop it. Their tops get unknown shapes (or the shapes `inputs` gives them), the
    layers after them are analysed as far as that allows, and each unknown type stays in
    `net.warnings`. Every other error still raises."""
    net, problems = check_net(source, **settings)
    unknown = [p for p in problems if p.kind is UnknownLayerType and not p.warning]
    raise_if_errors([p for p in problems if p not in unknown])
    hint = "; its tops have unknown shapes (--input NAME=N,C,H,W sizes them)"
    net.warnings = sorted([p for p in problems if p.warning] +
                          [replace(p, message=p.message + hint, warning=True) for p in unknown],
                          key=lambda p: p.line or 0)
    return net


def reshape(net: Net, inputs: dict, solve_crops: bool = True) -> Net:
    """Caffe's Reshape: the same checked net with new input shapes (known only after a data
    layer's first batch); shapes and fields again, not the parse and checks before them."""
    problems = infer_shapes(net, normalise_inputs(inputs))
    problems += infer_fields(net, solve_crops)
    raise_if_errors(problems)
    net.warnings += [p for p in problems if p.warning]
    return net


def solve_crops(source, inputs: dict | None = None) -> tuple:
    """The upgraded net with every derivable solution (crop offsets) written in, in both
    phases; returns (ParsedNet, one line per changed layer)."""
    solutions = {}
    for phase in PHASES:
        net, problems = check_net(source, phase=phase, inputs=inputs)
        raise_if_errors(problems)
        for layer in net.layers:
            if layer.solution:
                solutions.setdefault(layer.source_index, (layer, net))
    parsed = parse_net(source)
    changes = []
    for index, (layer, net) in sorted(solutions.items()):
        param = parsed.net.layer[index]
        if layer.rule.write_solution(param, layer.solution):
            values = ", ".join(f"{key} {value}" for key, value in layer.solution.items())
            changes.append(f"{net.path}:{net.line_of(layer)}: layer '{layer.name}' ({layer.type}): "
                           f"wrote {values}")
    return parsed, changes


def normalise_inputs(inputs: dict | None) -> dict[str, tuple]:
    result = {}
    for name, shape in (inputs or {}).items():
        try:
            result[name] = tuple(int(dim) for dim in shape)
        except (TypeError, ValueError):
            raise UsageError(f"input {name}: shape must be a sequence of integers, got {shape!r}") \
                from None
    return result


@dataclass
class BlobReport:
    name: str
    shape: tuple | None
    producer: str | None
    producer_type: str | None
    in_place: list[str] = field(default_factory=list)  # layers that rewrite it in place
    rf: dict = field(default_factory=dict)  # input name -> size/stride/offset per axis
    settings: str = ""  # the producer's key parameters, as `netdef draw` shows them (table only)
    params: int | None = 0  # learned values of the layers that write it (None: unknown shapes)
    flops: int | None = 0  # their forward floating-point operations
    bytes: int | None = None  # the blob in float32

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape) if self.shape is not None else None,
                "producer": self.producer, "rf": self.rf}  # DESIGN §3's keys, exactly

    def add_cost(self, cost: tuple | None) -> None:
        if cost is None:
            self.params = self.flops = None
        elif self.params is not None:
            self.params, self.flops = self.params + cost[0], self.flops + cost[1]


@dataclass
class Report:
    name: str
    path: str
    inputs: dict[str, tuple | None]
    blobs: list[BlobReport]
    warnings: list[Problem]

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "inputs": {name: list(shape) if shape else None for name, shape in self.inputs.items()},
            "blobs": [blob.to_json() for blob in self.blobs],
            "warnings": [warning.format() for warning in self.warnings],
            "costs": {blob.name: {"params": blob.params, "flops": blob.flops, "bytes": blob.bytes}
                      for blob in self.blobs},
            "totals": self.totals(),
        }

    def totals(self) -> dict:
        """Parameters, forward FLOPs and blob memory of the whole net; None where some
        shape is unknown."""
        def total(values):
            values = list(values)
            return None if any(v is None for v in values) else sum(values)
        return {"params": total(b.params for b in self.blobs),
                "flops": total(b.flops for b in self.blobs),
                "bytes": total(b.bytes for b in self.blobs)}

    def json_with(self, errors: list[Problem]) -> dict:
        """to_json plus the errors, for `info --json` on a net that has some."""
        return {**self.to_json(), "errors": [error.format() for error in errors]}

    def blob(self, name: str) -> BlobReport:
        return next(blob for blob in self.blobs if blob.name == name)


def analyze(source, *, phase: str = "TEST", inputs: dict | None = None, strict: bool = False,
            level: int | None = None, stages=None, solve_crops: bool = True,
            partial: bool = False) -> Report:
    """Shapes and receptive fields of every blob; raises if the net has errors (`partial`:
    but for unknown layer types, see partial_net)."""
    front = partial_net if partial else checked_net
    net = front(source, phase=phase, inputs=inputs, strict=strict, level=level, stages=stages,
                solve_crops=solve_crops)
    return build_report(net, net.warnings)


def report_anyway(source, **settings) -> tuple[Report | None, list[Problem]]:
    """The report of whatever could be analysed, and the errors found: for scripts that want
    JSON even from a broken net (`info --json`, `check --json`). A file that does not parse
    gives no report."""
    try:
        net, problems = check_net(source, **settings)
    except NetdefError as exc:
        return None, exc.problems or [Problem(type(exc), str(exc))]
    errors = [p for p in problems if not p.warning]
    return build_report(net, [p for p in problems if p.warning]), errors


def layer_cost(net: Net, layer) -> tuple[int, int] | None:
    """(learned values, forward FLOPs) of a layer; None when a shape it needs is unknown."""
    bottoms = [net.blobs[b].shape for b in layer.bottoms]
    tops = [net.blobs[t].shape for t in layer.tops]
    if layer.rule is None or any(shape is None for shape in bottoms):
        return None
    if layer.rule.is_input:
        return 0, 0
    try:
        params = sum(math.prod(shape) for shape in layer.rule.learned_shapes(layer.param, bottoms))
        return params, layer.rule.flops(layer.param, bottoms, tops)
    except (ShapeIssue, ArithmeticError, ValueError, IndexError):
        return None


def _settings(layer) -> str:
    if layer is None or layer.rule is None:
        return ""
    try:
        return layer.rule.summary(layer.param)
    except (ValueError, IndexError):  # a summary is a courtesy; the checks report bad params
        return ""


def build_report(net: Net, warnings: list[Problem]) -> Report:
    blobs: dict[str, BlobReport] = {}
    for blob in net.blobs.values():
        producer = net.layers[blob.producer] if blob.producer is not None else None
        if blob.name in blobs:  # an in-place version: fold it into the first
            entry = blobs[blob.name]
            entry.in_place.append(producer.name)
            entry.shape = blob.shape if blob.shape is not None else entry.shape
            entry.rf = rf_json(blob.coords)
        else:
            entry = blobs[blob.name] = BlobReport(
                blob.name, blob.shape, producer.name if producer else None,
                producer.type if producer else None, rf=rf_json(blob.coords),
                settings=_settings(producer))
            entry.bytes = 4 * math.prod(blob.shape) if blob.shape is not None else None
        if producer is not None and producer.tops[0] == blob.id:  # a layer counts once
            entry.add_cost(layer_cost(net, producer))
    inputs = {net.blobs[blob_id].name: net.blobs[blob_id].shape for blob_id in net.input_blobs}
    return Report(net.parsed.net.name, net.path, inputs, list(blobs.values()), warnings)
