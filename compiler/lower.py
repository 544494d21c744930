"""Lowering: the checked IR becomes a torch.fx GraphModule, and caffemodel blobs bind to it.

One placeholder per input blob, one call_module per computing layer (the
module its rule describes), getitem nodes for multi-top layers, and an output
dict of the net's outputs: tops no layer reads, keyed by Caffe blob name, in
definition order. Each node records its Caffe layer name and prototxt line in
`node.meta`, so `.code` and errors lead back to the file.
"""
from __future__ import annotations

import inspect
import keyword
import operator
import os
import re

import torch
from torch import fx, nn

from netdef.errors import LoweringError, Problem, raise_if_errors

from .ir import Layer, Net
from .modules import LoweringContext, LoweringIssue, ModuleSpec


def lower(net: Net, outputs=None) -> fx.GraphModule:
    """`outputs` names the blobs forward returns (internal ones too); by default the net's."""
    specs, problems = module_specs(net)
    raise_if_errors(problems)
    returned = output_blobs(net) if outputs is None else chosen_blobs(net, outputs)
    root = nn.Module()
    graph = fx.Graph()
    values: dict[str, fx.Node] = {}  # blob id -> node
    names = Names()
    targets: list[tuple[int, str]] = []
    input_names = {}
    defaults = ImageInfoDefaults(net, root, graph, names)
    for layer in net.layers:
        if layer.rule.is_input:
            for blob_id in layer.tops:
                name = net.blobs[blob_id].name
                node = graph.placeholder(names.identifier(name),
                                         default_value=None if name in defaults.names
                                         else inspect.Signature.empty)
                if node.name != name:
                    input_names[name] = node.name
                _annotate(net, node, layer)
                values[blob_id] = node
                defaults.placed(layer, blob_id, values)
            continue
        spec = specs[layer.index]
        if spec is None:
            continue
        attribute = names.identifier(layer.name)
        root.add_module(attribute, _build(net, layer, spec))
        targets.append((layer.index, attribute))
        node = graph.call_module(attribute, tuple(values[b] for b in layer.bottoms))
        node.name = attribute
        _annotate(net, node, layer)
        if len(layer.tops) == 1:
            values[layer.tops[0]] = node
        else:
            for position, blob_id in enumerate(layer.tops):
                item = graph.call_function(operator.getitem, (node, position))
                values[blob_id] = item
    graph.output({net.blobs[b].name: values[b] for b in returned})
    module = CaffeGraphModule(root, graph, class_name=_class_name(net))
    module.graph.lint()
    module.caffe_input_names = input_names
    # (Caffe layer index, submodule name, its tensors in Caffe blob order), for weights
    module.caffe_parameters = [(index, target, specs[index].blobs) for index, target in targets
                               if specs[index].blobs]
    module.caffe_specs = {target: specs[index] for index, target in targets}
    module.caffe_specs.update(defaults.specs)
    return module


class CaffeGraphModule(fx.GraphModule):
    """A GraphModule whose forward(**blobs) takes Caffe blob names, also those that are not
    Python identifiers ('im-data' reaches the argument im_data)."""

    def __call__(self, *args, **blobs):
        renames = getattr(self, "caffe_input_names", None)
        if renames:
            blobs = {renames.get(name, name): value for name, value in blobs.items()}
        if getattr(self, "caffe_channels_last", False):  # set by compiler/optimize.py
            blobs = {name: _channels_last(value) for name, value in blobs.items()}
        # netdef.load's CPU inference modules choose their thread count by how fast recent
        # forwards ran (netdef/runtime/threads.py); never while torch traces the module
        choose = getattr(self, "caffe_thread_chooser", None)
        if choose is None or self.training or torch.compiler.is_compiling():
            return super().__call__(*args, **blobs)
        with choose.inputs(blobs):
            return super().__call__(*args, **blobs)


def _channels_last(value):
    if getattr(value, "dim", None) and value.dim() == 4 and value.is_floating_point():
        return value.contiguous(memory_format=torch.channels_last)
    return value


def module_specs(net: Net) -> tuple[dict[int, ModuleSpec | None], list[Problem]]:
    specs, problems = {}, []
    base_dir = os.path.dirname(os.path.abspath(net.path)) if os.path.isfile(net.path) else None
    for layer in net.layers:
        if layer.rule is None or layer.rule.is_input:
            continue
        shapes = [net.blobs[b].shape for b in layer.bottoms]
        if any(shape is None for shape in shapes):
            problems.append(net.problem(LoweringError, "input shapes are unknown here; give them "
                                        "with inputs={...} (--input NAME=N,C,H,W)", layer))
            continue
        ctx = LoweringContext(shapes, [net.blobs[t].shape for t in layer.tops], layer.solution,
                              base_dir=base_dir)
        try:
            specs[layer.index] = layer.rule.lower(layer.param, ctx)
        except LoweringIssue as issue:
            problems.append(net.problem(LoweringError, str(issue), layer, issue.field_path))
        except (ArithmeticError, ValueError, IndexError, TypeError) as exc:
            # parameters the checks let through: still the user's file, never a traceback
            problems.append(net.problem(LoweringError, f"cannot lower: {exc}", layer))
    return specs, problems


def _build(net: Net, layer: Layer, spec: ModuleSpec) -> nn.Module:
    try:
        return spec.build()
    except (ArithmeticError, ValueError, IndexError, TypeError, RuntimeError) as exc:
        raise LoweringError(problems=[net.problem(LoweringError, f"cannot build "
                                                  f"{spec.factory}: {exc}", layer)]) from None


def output_blobs(net: Net) -> list[str]:
    """Tops no computing layer reads (a Silence may), in definition order."""
    return [blob.id for blob in net.blobs.values()
            if blob.producer is not None and not net.layers[blob.producer].rule.is_input
            and all(net.layers[c].rule.family == "sink" for c in blob.consumers)]


def chosen_blobs(net: Net, names) -> list[str]:
    """The ids of the named blobs, each at its last version (after in-place layers), as
    Caffe's net.blobs[name] holds it after a forward."""
    latest = {blob.name: blob.id for blob in net.blobs.values()}
    unknown = [name for name in names if name not in latest]
    if unknown:
        from netdef.errors import UsageError
        raise UsageError(f"outputs: no blob named {', '.join(map(repr, unknown))}; the net's "
                         f"blobs are {', '.join(sorted(latest))}")
    return [latest[name] for name in dict.fromkeys(names)]


class ImageInfoDefaults:
    """Inputs a rule reads as image information (Faster R-CNN's im_info: height, width,
    scale) become optional: a runtime ImageInfo node fills one left out from the first
    image input's size, so forward(data=image) runs the net."""

    def __init__(self, net: Net, root: nn.Module, graph: fx.Graph, identifiers: "Names"):
        self.net, self.root, self.graph, self.identifiers = net, root, graph, identifiers
        self.names: set[str] = set()
        for layer in net.layers:
            position = layer.rule.image_info_bottom if layer.rule else None
            if position is not None and position < len(layer.bottoms):
                blob = net.blobs[layer.bottoms[position]]
                if blob.id in net.input_blobs:
                    self.names.add(blob.name)
        self.specs: dict[str, ModuleSpec] = {}
        self.image, self.waiting = None, []

    def placed(self, layer: Layer, blob_id: str, values: dict) -> None:
        blob = self.net.blobs[blob_id]
        if blob.name in self.names:
            self.waiting.append((layer, blob_id))
        elif self.image is None and blob.shape is not None and len(blob.shape) == 4:
            self.image = values[blob_id]
        if self.image is not None:
            for waiting_layer, waiting_id in self.waiting:
                self._fill(waiting_layer, waiting_id, values)
            self.waiting = []

    def _fill(self, layer: Layer, blob_id: str, values: dict) -> None:
        attribute = self.identifiers.identifier(f"{self.net.blobs[blob_id].name}_default")
        spec = ModuleSpec("netdef.runtime.ImageInfo")
        self.root.add_module(attribute, spec.build())
        node = self.graph.call_module(attribute, (values[blob_id], self.image))
        node.name = attribute
        _annotate(self.net, node, layer)
        values[blob_id] = node
        self.specs[attribute] = spec


def _annotate(net: Net, node: fx.Node, layer: Layer) -> None:
    node.meta["caffe_layer"] = layer.name
    node.meta["caffe_type"] = layer.type
    node.meta["caffe_line"] = net.line_of(layer)


# Names a layer must not take: model.py's globals and forward's `self`, and attributes every
# nn.Module already has ('forward', 'training', 'cuda'...).
RESERVED = {"self", "torch", "nn", "netdef", "operator", "getitem", "SOURCE", "NET", "LAYERS",
            "INPUT_NAMES", "load"}
_MODULE_ATTRIBUTES = set(dir(nn.Module()))


class Names:
    """ASCII Python identifiers for Caffe names ('score-pool4' -> 'score_pool4'), unique."""

    def __init__(self):
        self.used: set[str] = set()

    def identifier(self, name: str) -> str:
        base = re.sub(r"[^0-9A-Za-z_]", "_", name) or "layer"
        if base[0].isdigit() or keyword.iskeyword(base):
            base = "_" + base
        while base in RESERVED or base in _MODULE_ATTRIBUTES or base.startswith("__"):
            base = "L" + base if base.startswith("__") else "_" + base
        candidate, count = base, 1
        while candidate in self.used:
            count += 1
            candidate = f"{base}_{count}"
        self.used.add(candidate)
        return candidate


def _class_name(net: Net) -> str:
    name = re.sub(r"[^0-9A-Za-z]", "", net.parsed.net.name.title())[:64] or "Caffe"
    name = name if name[0].isalpha() else "Net" + name
    return "Net" + name if keyword.iskeyword(name) or name in RESERVED else name
