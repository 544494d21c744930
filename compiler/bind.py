"""Binding: a lowered module gets its tensors. Caffe's order: the prototxt's fillers first
(seeded), then the blobs of a weights file by layer name (duplicates in order), every shape
checked before anything is copied; net surgery (FCN's convolutionalize, score expansion)
happens here. `build_module` is the whole load path from a checked Net: lower, fill, bind.
"""
from __future__ import annotations

import math
import warnings
from typing import Iterable

import numpy as np
import torch
from torch import fx

from netdef.errors import LoweringError, Problem, UsageError, WeightError, raise_if_errors
from netdef.proto import netdef_pb2 as pb

from .fillers import fill
from .ir import Layer, Net
from .layers._base import fmt
from .lower import lower
from .progress import byte_progress
from .weights import CaffeLayer, read_weights


def build_module(net: Net, weights=None, *, device="cpu", dtype=None, seed: int = 0,
                 convolutionalize: bool = False, expand_score=(),
                 optimize: bool = False, outputs=None) -> fx.GraphModule:
    """The checked net as a module with its tensors (netdef.load after the checks);
    `device="meta"` builds the structure alone; `optimize` runs the inference passes
    (compiler/optimize.py) on a TEST-phase module once its weights are bound."""
    if optimize and net.state.phase != pb.TEST:
        raise UsageError("optimize=True is for TEST-phase nets; training uses the faithful module")
    caffe_layers = read_weights(weights) if weights is not None else None
    meta = str(device) == "meta"
    if not meta:
        check_memory(net)
    with torch.device("meta") if meta else _no_context():
        module = lower(net, outputs)
    if not meta:
        apply_fillers(module, net, seed)
        if caffe_layers is not None:
            bind_weights(module, net, caffe_layers, str(weights),
                         convolutionalize=convolutionalize, expand_score=expand_score)
    module.caffe_net = net  # the checked IR, for training (ParamSpecs, loss weights, data layers)
    module.train(net.state.phase == pb.TRAIN)
    if optimize and not meta:
        from .optimize import optimize as optimized
        optimized(module)
    return module.to(device=None if meta else device, dtype=dtype)


def convert_weights(weights, output, net=None, *, on_load=None, literal_crops: bool = False,
                    **surgery) -> tuple[int, int]:
    """A weights file as safetensors: keyed `layer.blob` straight from the file (packed
    float32 data copied file to file), or, given the net, the bound module's state dict
    (`module.tensor`, after any surgery); or, to a `.caffemodel` given the net, the bound
    module's blobs as Caffe writes them. Returns (tensors, bytes) written."""
    from .analysis import checked_net
    from .safetensors_io import write_safetensors
    from .weights import layer_key, read_caffemodel, write_caffemodel

    to_caffe = str(output).endswith(".caffemodel")
    if to_caffe and net is None:
        raise UsageError("writing a caffemodel needs --net NET: its layer names and types")
    if net is not None:
        module = build_module(checked_net(net, solve_crops=not literal_crops), weights, **surgery)
        if on_load is not None:
            on_load(module)
        if to_caffe:  # back to Caffe: V2 layers, blobs in Caffe's order and shapes
            layers = caffe_layers(module)
            with open(output, "wb") as out:
                write_caffemodel(out, layers)
            blobs = [blob for _, _, layer_blobs in layers for blob in layer_blobs]
            return len(blobs), sum(blob.nbytes for blob in blobs)
        tensors = module.state_dict()
        write_safetensors(output, tensors)
    else:
        tensors, spans, seen = {}, {}, {}
        with open(weights, "rb") as source:
            for layer in read_caffemodel(weights):
                key = layer_key(layer.name, seen)
                for index, (blob, span) in enumerate(zip(layer.blobs, layer.spans)):
                    tensors[f"{key}.{index}"] = blob
                    if span is not None:
                        spans[f"{key}.{index}"] = (source.fileno(), *span)
            write_safetensors(output, tensors, spans)
    nbytes = sum(4 * (t.numel() if hasattr(t, "numel") else t.size) for t in tensors.values())
    return len(tensors), nbytes


def caffe_layers(module: fx.GraphModule) -> list[tuple[str, str, list[np.ndarray]]]:
    """(name, type, blobs) of every layer with learned blobs, as Caffe stores them."""
    net, layers = module.caffe_net, []
    for index, target, names in module.caffe_parameters:
        layer, owner = net.layers[index], module.get_submodule(target)
        blobs = [getattr(owner, name).detach().cpu().float().numpy() for name in names]
        layers.append((layer.name, layer.type, layer.rule.caffe_blobs(layer.param, blobs)))
    return layers


def _no_context():
    import contextlib
    return contextlib.nullcontext()


def learned_bytes(net: Net, itemsize: int = 4) -> int:
    """What the learned blobs (rule.learned_shapes) will take in memory."""
    total = 0
    for layer in net.layers:
        bottoms = [net.blobs[b].shape for b in layer.bottoms]
        if layer.rule is None or not bottoms or any(shape is None for shape in bottoms):
            continue
        total += sum(math.prod(shape) for shape in layer.rule.learned_shapes(layer.param, bottoms))
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
    by_module = {layer.name: layer for layer in caffe_layers if layer.blob_names}
    for caffe_layer in caffe_layers:
        if not caffe_layer.blob_names:
            by_name.setdefault(caffe_layer.name, []).append(caffe_layer)
    expand_score = set(expand_score)
    copies, problems = [], []
    for index, target, blob_names in module.caffe_parameters:
        layer = net.layers[index]
        if target in by_module:  # a state dict (compile, convert --net): keyed by module
            caffe_layer = by_module.pop(target).in_order(blob_names)
        elif by_name.get(layer.name):
            caffe_layer = by_name[layer.name].pop(0)
        else:
            continue
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
    for name, left in by_module.items():
        by_name.setdefault(name, []).append(left)
    _record_matches(module, net, by_name, {id(tensor) for tensor, _ in copies})


def _record_matches(module: fx.GraphModule, net: Net, left: dict, bound: set) -> None:
    """What matched nothing, for the user to see (Caffe only logs it): caffemodel layers
    left unread, net layers none of whose tensors were bound, and the tensors that were."""
    module.caffe_unused_layers = [name for name, layers in left.items() for _ in layers]
    module.caffe_loaded_tensors = {  # `target.name` of each tensor the file gave
        f"{target}.{name}" for _, target, names in module.caffe_parameters for name in names
        if id(getattr(module.get_submodule(target), name)) in bound}
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
