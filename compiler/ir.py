"""The IR: a bipartite networkx DiGraph of layer nodes and blob nodes.

Phase/level/stage filtering happens here, once. An in-place top becomes a new
blob version (`conv1`, `conv1@1`) so the graph stays acyclic without touching
the proto. Duplicate layer names are legal and keep their order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from netdef.errors import GraphError, Problem, UnknownLayerType, did_you_mean
from netdef.proto import netdef_pb2 as pb

from .layers import LayerRule, registry
from .parse import ParsedNet

MAX_HINTS = 20  # did-you-mean suggestions for missing bottoms; each one compares every name


@dataclass
class Layer:
    index: int  # position among the kept layers
    source_index: int  # position in the (upgraded) NetParameter, for the source map
    param: pb.LayerParameter
    rule: LayerRule | None
    bottoms: list[str] = field(default_factory=list)  # blob ids
    tops: list[str] = field(default_factory=list)
    solution: dict = field(default_factory=dict)  # values a pass derived (solved crop offsets)

    @property
    def name(self) -> str:
        return self.param.name

    @property
    def type(self) -> str:
        return self.param.type

    @property
    def node(self) -> tuple:
        return ("layer", self.index)


@dataclass
class Blob:
    id: str  # unique: the Caffe name, plus @k for the k-th in-place rewrite
    name: str  # the Caffe blob name
    producer: int | None  # layer index
    shape: tuple | None = None
    consumers: list[int] = field(default_factory=list)
    coords: object = None  # coordinate maps per image input (receptive.py); None: not computed

    @property
    def node(self) -> tuple:
        return ("blob", self.id)


@dataclass
class NetState:
    phase: int = pb.TEST
    level: int = 0
    stages: tuple[str, ...] = ()


class Net:
    """The filtered net: layers in order, versioned blobs, the bipartite graph."""

    def __init__(self, parsed: ParsedNet, state: NetState):
        self.parsed = parsed
        self.state = state
        self.layers: list[Layer] = []
        self.blobs: dict[str, Blob] = {}
        self.graph = nx.DiGraph()
        self.input_blobs: list[str] = []  # tops of data layers, in order
        self.warnings: list[Problem] = []  # what the checks found short of an error

    @property
    def path(self) -> str:
        return self.parsed.path

    def line_of(self, layer: Layer, field_path: tuple = ()) -> int | None:
        return self.parsed.source_map.line_of(("layer", layer.source_index) + tuple(field_path))

    def problem(self, kind, message: str, layer: Layer | None = None, field_path: tuple = (),
                warning: bool = False) -> Problem:
        if layer is None:
            return Problem(kind, message, self.path, None, warning=warning)
        return Problem(kind, message, self.path, self.line_of(layer, field_path), layer.name,
                       layer.type, warning=warning)


def state_meets_rule(state: NetState, rule: pb.NetStateRule) -> bool:
    """Caffe's StateMeetsRule: every field set in the rule must hold."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    if any(stage not in state.stages for stage in rule.stage):
        return False
    return not any(stage in state.stages for stage in rule.not_stage)


def layer_included(state: NetState, layer: pb.LayerParameter) -> bool:
    if layer.include:
        return any(state_meets_rule(state, rule) for rule in layer.include)
    return not any(state_meets_rule(state, rule) for rule in layer.exclude)


def build_ir(parsed: ParsedNet, state: NetState) -> tuple[Net, list[Problem]]:
    """Filter the layers for `state` and connect them; returns the net and its graph problems."""
    builder = _Builder(Net(parsed, state))
    for source_index, param in enumerate(parsed.net.layer):
        if layer_included(state, param):
            builder.add_layer(source_index, param)
    builder.explain_forward_references()
    return builder.net, builder.problems


class _Builder:
    def __init__(self, net: Net):
        self.net = net
        self.rules = registry()
        self.current: dict[str, str] = {}  # Caffe blob name -> id of its latest version
        self.versions: dict[str, int] = {}
        self.problems: list[Problem] = []
        self.unresolved: list[tuple[Layer, int, str]] = []
        self.left_out: dict[str, str] | None = None  # tops of the layers this phase drops

    def add_layer(self, source_index: int, param: pb.LayerParameter) -> None:
        net = self.net
        rule = self.rules.get(param.type)
        layer = Layer(len(net.layers), source_index, param,
                      rule.served_as(param) if rule is not None else None)
        net.layers.append(layer)
        net.graph.add_node(layer.node, kind="layer")
        if layer.rule is None:
            self.report_unknown_type(layer)
        for position, name in enumerate(param.bottom):
            self.connect_bottom(layer, position, name)
        listed: set[str] = set()
        for position, name in enumerate(param.top):
            self.connect_top(layer, position, name, listed)
        if layer.rule is not None and layer.rule.is_input:
            net.input_blobs.extend(layer.tops)

    def report_unknown_type(self, layer: Layer) -> None:
        if not layer.type:
            message = "the layer has no type"
        else:
            message = (f"unknown layer type '{layer.type}'"
                       f"{did_you_mean(layer.type, self.rules, cutoff=0.7)}")
        self.problems.append(self.net.problem(UnknownLayerType, message, layer, ("type",)))

    def connect_bottom(self, layer: Layer, position: int, name: str) -> None:
        blob_id = self.current.get(name)
        if blob_id is None:
            self.unresolved.append((layer, position, name))
            return
        layer.bottoms.append(blob_id)
        self.net.blobs[blob_id].consumers.append(layer.index)
        self.net.graph.add_edge(("blob", blob_id), layer.node, position=position)

    def connect_top(self, layer: Layer, position: int, name: str, listed: set[str]) -> None:
        net = self.net
        if name in listed:
            self.problems.append(net.problem(GraphError, f"top '{name}' is listed twice", layer,
                                             ("top", position)))
            return
        listed.add(name)
        bottoms = layer.param.bottom
        in_place = position < len(bottoms) and bottoms[position] == name
        if name in self.current and not in_place:
            producer = net.blobs[self.current[name]].producer
            first = net.layers[producer] if producer is not None else None
            where = f"layer '{first.name}' (line {net.line_of(first)})" if first else "an input"
            self.problems.append(net.problem(
                GraphError, f"top '{name}' is already produced by {where}; two layers cannot "
                "produce one blob (in-place needs the same name at the same bottom position)",
                layer, ("top", position)))
            return
        version = self.versions.get(name, -1) + 1
        self.versions[name] = version
        blob_id = name if version == 0 else f"{name}@{version}"
        net.blobs[blob_id] = Blob(blob_id, name, layer.index)
        self.current[name] = blob_id
        layer.tops.append(blob_id)
        net.graph.add_node(("blob", blob_id), kind="blob")
        net.graph.add_edge(layer.node, ("blob", blob_id), position=position)

    def explain_forward_references(self) -> None:
        """Report each bottom that no earlier layer produced: a typo, a cycle, or misordering."""
        produced_later = {}
        for layer in self.net.layers:
            for name in layer.param.top:
                produced_later.setdefault(name, layer)
        cycles = self.cycle_groups() if self.unresolved else {}
        hints = 0
        for layer, position, name in self.unresolved:
            producer = produced_later.get(name)
            if producer is None:
                hints += 1  # each hint scans every name: only the first few get one
                hint = did_you_mean(name, self.current) if hints <= MAX_HINTS else ""
                message = f"bottom '{name}' is not produced by any layer{hint}"
                message += self.phase_note(name)
            elif cycles.get(layer.index) is not None and \
                    cycles.get(layer.index) == cycles.get(producer.index):
                message = (f"bottom '{name}' comes from layer '{producer.name}' (line "
                           f"{self.net.line_of(producer)}), which depends on this layer: a cycle")
            else:
                message = (f"bottom '{name}' is produced only later, by layer '{producer.name}' "
                           f"(line {self.net.line_of(producer)}); a layer must follow its inputs")
            self.problems.append(self.net.problem(GraphError, message, layer, ("bottom", position)))

    def phase_note(self, name: str) -> str:
        """Where a missing blob is produced by a layer the phase leaves out, say so."""
        if self.left_out is None:  # built once: a file may miss thousands of bottoms
            self.left_out = {}
            for param in self.net.parsed.net.layer:
                if not layer_included(self.net.state, param):
                    for top in param.top:
                        self.left_out.setdefault(top, param.name)
        if name not in self.left_out:
            return ""
        phase = pb.Phase.Name(self.net.state.phase)
        return (f" in the {phase} phase (layer '{self.left_out[name]}' makes it, but its "
                f"include/exclude rules leave it out of {phase})")

    def cycle_groups(self) -> dict[int, int]:
        """Layer index -> its strongly connected component in the graph wired by names,
        ignoring order: a layer and the producer of its bottom share one exactly when the
        producer (transitively) reads what the layer makes."""
        by_name = nx.DiGraph()
        for node in self.net.layers:
            by_name.add_node(node.index)
            for bottom in node.param.bottom:
                by_name.add_edge(("blob", bottom), node.index)
            for top in node.param.top:
                if top not in node.param.bottom:
                    by_name.add_edge(node.index, ("blob", top))
        groups = {}
        for number, component in enumerate(nx.strongly_connected_components(by_name)):
            if len(component) > 1:
                groups.update((node, number) for node in component if isinstance(node, int))
        return groups
