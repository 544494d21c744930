"""Lowering: the checked IR becomes a torch.fx GraphModule, and caffemodel blobs bind to it.

One placeholder per input blob, one call_module per computing layer (the
module its rule describes), getitem nodes for multi-top layers, and an output
dict of the net's outputs: tops no layer reads, keyed by Caffe blob name, in
definition order. Each node records its Caffe layer name and prototxt line in
`node.meta`, so `.code` and errors lead back to the file.
"""
from __future__ import annotations

import keyword
import math
import operator
import os
import re
import warnings
from typing import Iterable

import numpy as np
import torch
from torch import fx, nn

from netdef.errors import LoweringError, Problem, WeightError, raise_if_errors

from .ir import Layer, Net
from .layers._base import fmt
from .layers._lowering import LoweringContext, LoweringIssue, ModuleSpec
from .fillers import fill
from .progress import byte_progress
from .weights import CaffeLayer


def lower(net: Net) -> fx.GraphModule:
    specs, problems = module_specs(net)
    raise_if_errors(problems)
    root = nn.Module()
    graph = fx.Graph()
    values: dict[str, fx.Node] = {}  # blob id -> node
    names = Names()
    targets: list[tuple[int, str]] = []
    input_names = {}
    for layer in net.layers:
        if layer.rule.is_input:
            for blob_id in layer.tops:
                name = net.blobs[blob_id].name
                node = graph.placeholder(names.identifier(name))
                if node.name != name:
                    input_names[name] = node.name
                _annotate(net, node, layer)
                values[blob_id] = node
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
    graph.output({net.blobs[b].name: values[b] for b in output_blobs(net)})
    module = CaffeGraphModule(root, graph, class_name=_class_name(net))
    module.graph.lint()
    module.caffe_input_names = input_names
    # (Caffe layer index, submodule name, its tensors in Caffe blob order), for weights
    module.caffe_parameters = [(index, target, specs[index].blobs) for index, target in targets
                               if specs[index].blobs]
    module.caffe_specs = {target: specs[index] for index, target in targets}
    return module


def learned_bytes(net: Net, itemsize: int = 4) -> int:
    """What the parameter-sized learned blobs (rule.weight_shapes) will take in memory."""
    total = 0
    for layer in net.layers:
        bottoms = [net.blobs[b].shape for b in layer.bottoms]
        if layer.rule is None or not bottoms or any(shape is None for shape in bottoms):
            continue
        total += sum(math.prod(shape) for shape in layer.rule.weight_shapes(layer.param, bottoms))
    return total * itemsize


def check_memory(net: Net) -> None:
    """Refuse, before allocating, a net whose weights cannot fit in this machine's free memory."""
    needed, available = learned_bytes(net), available_memory()
    if available is not None and needed > available:
        raise LoweringError(problems=[net.problem(
            LoweringError, f"the net's weights need {needed / 2**30:.1f} GiB; this machine has "
            f"{available / 2**30:.1f} GiB available (device='meta' builds the structure alone)")])


def available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class CaffeGraphModule(fx.GraphModule):
    """A GraphModule whose forward(**blobs) takes Caffe blob names, also those that are not
    Python identifiers ('im-data' reaches the argument im_data)."""

    def __call__(self, *args, **blobs):
        renames = getattr(self, "caffe_input_names", None)
        if renames:
            blobs = {renames.get(name, name): value for name, value in blobs.items()}
        return super().__call__(*args, **blobs)


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
    """Tops no layer reads, in definition order."""
    return [blob.id for blob in net.blobs.values()
            if not blob.consumers and blob.producer is not None
            and not net.layers[blob.producer].rule.is_input]


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


# ------------------------------------------------------------------ weights
def apply_fillers(module: fx.GraphModule, net: Net, seed: int = 0) -> None:
    """Initialise every parameter as Caffe would before loading weights: the prototxt's fillers."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for index, target, blob_names in module.caffe_parameters:
            layer = net.layers[index]
            fillers = layer.rule.fillers(layer.param)
            for name, (filler, default) in zip(blob_names, fillers):
                tensor = getattr(module.get_submodule(target), name)
                try:
                    values = fill(tuple(tensor.shape), filler, rng, default)
                except ValueError as exc:
                    raise LoweringError(problems=[net.problem(LoweringError, str(exc), layer)]) \
                        from None
                tensor.copy_(torch.from_numpy(values))


def bind_weights(module: fx.GraphModule, net: Net, caffe_layers: list[CaffeLayer],
                 weights_path: str, *, convolutionalize: bool = False,
                 expand_score: Iterable[str] = ()) -> None:
    """Copy caffemodel blobs into the module: by layer name, duplicates in order.

    Net surgery, FCN style: `convolutionalize` pours a fully connected layer's N x K
    weights into an N x C x kh x kw convolution of the same size (fc6 -> conv fc6);
    a layer named in `expand_score` takes a blob with fewer outputs into its leading
    outputs, the rest keeping their fillers (a scorer grown to more classes).
    Every blob's shape is checked first, so a mismatch leaves the module untouched.
    """
    by_name: dict[str, list[CaffeLayer]] = {}
    for caffe_layer in caffe_layers:
        by_name.setdefault(caffe_layer.name, []).append(caffe_layer)
    expand_score = set(expand_score)
    copies, problems = [], []
    for index, target, blob_names in module.caffe_parameters:
        layer = net.layers[index]
        if not by_name.get(layer.name):
            continue
        caffe_layer = by_name[layer.name].pop(0)
        tensors = [getattr(module.get_submodule(target), name) for name in blob_names]
        if len(caffe_layer.blobs) > len(tensors):
            problems.append(_weight_problem(net, layer, weights_path,
                                            f"the caffemodel has {len(caffe_layer.blobs)} blobs; "
                                            f"the layer takes {len(tensors)}"))
            continue
        for position, (array, tensor) in enumerate(zip(caffe_layer.blobs, tensors)):
            fitted = _fit_blob(array, tuple(tensor.shape), convolutionalize,
                               layer.name in expand_score)
            if fitted is None:
                hint = "" if convolutionalize or array.size != tensor.numel() else \
                    " (same size: --convolutionalize reshapes it)"
                problems.append(_weight_problem(
                    net, layer, weights_path, f"blob {position}: expected shape "
                    f"{fmt(tuple(tensor.shape))}, the caffemodel has {fmt(array.shape)}{hint}"))
                continue
            copies.append((tensor, fitted))
    raise_if_errors(problems)
    total = sum(array.nbytes for _, array in copies)
    with torch.no_grad(), warnings.catch_warnings(), \
            byte_progress(total, f"loading {weights_path}") as progress:
        # the arrays are read-only views of the mmapped file; copy_ only reads them
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for tensor, array in copies:
            source = torch.from_numpy(np.asarray(array, dtype=np.float32))
            tensor[tuple(slice(0, n) for n in source.shape)].copy_(source)
            progress.update(array.nbytes)
    _record_matches(module, net, by_name, {id(tensor) for tensor, _ in copies})


def _record_matches(module: fx.GraphModule, net: Net, left: dict, bound: set) -> None:
    """What matched nothing, for the user to see (Caffe only logs it): caffemodel layers
    left unread, and net layers none of whose tensors were bound."""
    module.caffe_unused_layers = [name for name, layers in left.items() for _ in layers]
    module.caffe_unfilled_layers = [
        net.layers[index].name for index, target, names in module.caffe_parameters
        if not any(id(getattr(module.get_submodule(target), name)) in bound for name in names)]


def _fit_blob(array: np.ndarray, shape: tuple, convolutionalize: bool, expand: bool):
    """The blob reshaped to the parameter's shape (or, expanding, to its leading outputs),
    or None when it cannot go there."""
    if tuple(array.shape) == shape:
        return array
    found = _without_leading_ones(array.shape, len(shape))
    outputs = found[0] if expand and found and found[0] <= shape[0] else shape[0]
    target = (outputs,) + tuple(shape[1:])
    if array.size != math.prod(target):
        return None
    if found == target or _legacy_4d(array.shape, target) or (
            convolutionalize and found[0] == outputs and len(target) > len(found)):
        return array.reshape(target)
    return None


def _without_leading_ones(found: tuple, ndim: int) -> tuple:
    """V1 blobs pad shapes with leading 1s: (1, 1, 1, 21) is a 21-vector."""
    found = tuple(found)
    while len(found) > ndim and found[0] == 1:
        found = found[1:]
    return found


def _legacy_4d(found, expected) -> bool:
    """V1 blobs are always num x channels x height x width: (1, 1, N, K) is an (N, K) matrix."""
    return len(found) == 4 and tuple(d for d in found if d != 1) == tuple(d for d in expected if d != 1)


def _weight_problem(net: Net, layer: Layer, path: str, message: str) -> Problem:
    """Located at the layer in the prototxt; the message names the weights file."""
    return net.problem(WeightError, f"{message} (in {path})", layer)
