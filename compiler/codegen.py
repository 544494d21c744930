"""`netdef compile`: a readable, importable model.py, safetensors weights, the report, a drawing.

model.py holds one nn.Module class: __init__ builds each layer from the constructor its rule
described (torch.nn or netdef.runtime), forward is torch.fx's code for the graph. It needs
torch, safetensors and netdef.runtime only, never the compiler.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from torch import fx

from .safetensors_io import write_safetensors
from .weights import OPTIMIZED

HEADER = '''"""A Caffe net compiled by `netdef compile`.

SOURCE is the prototxt it came from, NET its name, and LAYERS maps each Caffe layer
(name, type, prototxt line) to the attribute that computes it.
"""
import torch
from torch import nn
{runtime_import}
SOURCE = {source}
NET = {title}
LAYERS = (
{layers})
INPUT_NAMES = {input_names}  # Caffe blob name -> forward() argument, where they differ
CHANNELS_LAST = {channels_last}  # optimized: 4-D weights and images in channels_last


class {name}(nn.Module):
    def __init__(self, device=None):
        """device="meta": the learned layers get no initial values (load() assigns the file's)."""
        super().__init__()
{constructors}

    def __call__(self, *args, **blobs):
        """forward(**blobs) by Caffe blob name, identifier or not ('im-data')."""
        blobs = {{INPUT_NAMES.get(k, k): v for k, v in blobs.items()}}
        if CHANNELS_LAST:
            blobs = {{k: v.contiguous(memory_format=torch.channels_last)
                     if v.dim() == 4 and v.is_floating_point() else v for k, v in blobs.items()}}
        return super().__call__(*args, **blobs)
{forward}

def load(weights=None, device="cpu"):
    """The model with its weights (weights.safetensors beside this file by default), in eval mode."""
    from pathlib import Path

    from safetensors.torch import load_file

    model = {name}(device="meta")  # no time spent initialising what the file replaces
    path = Path(weights) if weights else Path(__file__).with_name("weights.safetensors")
    model.load_state_dict(load_file(str(path), device=str(device)), assign=True)
    if CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
    return model.to(device).eval()
'''


# torch.nn layers with learned tensors, built with device= so load() can skip their
# initialisation (the other modules hold nothing the file gives, or are cheap)
TAKES_DEVICE = ("torch.nn.Conv", "torch.nn.ConvTranspose", "torch.nn.PReLU")


def model_source(module: fx.GraphModule, source: str, title: str) -> str:
    """model.py's text. Everything that comes from the model file (names, paths, parameter
    values) goes in as a Python literal (`literal`), never as raw text."""
    constructors = []
    layers = []
    for node in module.graph.nodes:
        if node.op != "call_module":
            continue
        spec = module.caffe_specs[node.target]
        arguments = ", ".join(f"{key}={literal(value)}" for key, value in spec.kwargs.items())
        if spec.factory.startswith(TAKES_DEVICE):
            arguments += ", device=device" if arguments else "device=device"
        constructors.append(f"        self.{node.target} = {spec.factory}({arguments})")
        entry = (node.meta["caffe_layer"], node.meta["caffe_type"], node.meta["caffe_line"],
                 node.target)
        layers.append(f"    {literal(entry)},\n")
    forward = _indent(module.code.strip("\n"))
    netdef_modules = sorted({s.factory.rsplit(".", 1)[0] for s in module.caffe_specs.values()
                             if s.factory.startswith("netdef.")})
    return HEADER.format(source=literal(source), title=literal(title), layers="".join(layers),
                         input_names=literal(getattr(module, "caffe_input_names", {})),
                         runtime_import="".join(f"import {name}\n" for name in netdef_modules),
                         channels_last=bool(getattr(module, "caffe_channels_last", False)),
                         name=type(module).__name__, constructors="\n".join(constructors) or
                         "        pass", forward=forward)


def literal(value) -> str:
    """Python source for a constructor argument or a name: repr, except floats that repr
    cannot round-trip (inf, nan) and containers holding them."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, tuple):
        items = ", ".join(literal(item) for item in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, list):
        return "[" + ", ".join(literal(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return repr(value)
    raise TypeError(f"no Python literal for {type(value).__name__}")


def _indent(code: str) -> str:
    return "\n".join(("    " + line) if line.strip() else "" for line in code.splitlines())


def check_imports(folder: Path) -> str | None:
    """Import model.py in a fresh interpreter and build its module on the meta device;
    None if that works, else what went wrong."""
    script = ("import sys, torch; sys.path.insert(0, sys.argv[1]); import model\n"
              "with torch.device('meta'):\n"
              "    [cls for cls in vars(model).values() if isinstance(cls, type)"
              " and issubclass(cls, torch.nn.Module) and cls.__module__ == 'model'][0]()\n")
    try:
        result = subprocess.run([sys.executable, "-c", script, str(folder.resolve())],
                                capture_output=True, text=True, timeout=300, cwd=str(folder))
    except subprocess.TimeoutExpired:
        return "importing it took more than 300 s"
    if result.returncode == 0:
        return None
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


def compile_net(source, out_dir, *, weights=None, inputs=None, phase="TEST", fmt="fx",
                on_load=None, literal_crops: bool = False, optimize: bool | None = None,
                device="cpu", **surgery) -> list[str]:
    """Write model.py, weights.safetensors, report.json, graph.svg (and model.pt2, model.onnx or
    model_aoti.pt2, see EXPORTS) from one checked net; returns the files written. `surgery`
    goes to binding (see bind.build_module); `on_load` sees the module. `optimize` (default:
    in the TEST phase) runs the inference passes; weights they rewrote carry OPTIMIZED.
    `device` is where the exported program runs (an aoti package's kernels are compiled for
    it); model.py and the weights are the same for every device."""
    from netdef.errors import LoweringError, UsageError

    from .analysis import build_report, checked_net
    from .bind import build_module
    from .draw import render, to_dot

    if fmt == "onnx":  # before anything is written
        try:
            import onnx  # noqa: F401  (torch's exporter needs them)
            import onnxscript  # noqa: F401
        except ImportError:
            raise UsageError("--format onnx needs the onnx and onnxscript packages "
                             "(pip install onnx onnxscript)") from None
    net = checked_net(source, phase=phase, inputs=inputs, solve_crops=not literal_crops)
    optimize = phase.upper() == "TEST" if optimize is None else optimize
    module = build_module(net, weights, optimize=optimize, device=device, **surgery)
    if on_load is not None:
        on_load(module)
    report = build_report(net, net.warnings)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    title = f"{report.name or 'net'}: {len(module.caffe_specs)} layers"
    (out / "model.py").write_text(model_source(module, str(net.path), title), encoding="utf-8")
    failure = check_imports(out)
    if failure is not None:
        raise LoweringError(f"{out / 'model.py'}: the generated file does not import "
                            f"({failure}); this is a bug in netdef, please report it")
    rewritten = getattr(module, "caffe_weights_rewritten", False)
    write_safetensors(out / "weights.safetensors", module.state_dict(),
                      metadata=OPTIMIZED if rewritten else None)
    (out / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    written += ["model.py", "weights.safetensors", "report.json"]
    try:
        render(to_dot(net), str(out / "graph.svg"), "svg")
        written.append("graph.svg")
    except UsageError as exc:  # no graphviz: everything else still stands
        print(f"note: graph.svg not written: {exc}", file=sys.stderr)
        written.append(f"(graph.svg skipped: {exc})")
    if fmt in EXPORTS:
        written.append(export_program(module, report.inputs, out, fmt))
    return written


# --format -> the file it adds: torch.export's program, ONNX, an AOTInductor package (compiled
# kernels for this machine's CPU, loaded with torch._inductor.aoti_load_package)
EXPORTS = {"pt2": "model.pt2", "onnx": "model.onnx", "aoti": "model_aoti.pt2"}


def export_program(module, inputs: dict, out: Path, fmt: str) -> str:
    """model.pt2 (torch.export), model.onnx (torch's dynamo-based exporter) or model_aoti.pt2
    (AOTInductor: compiled ahead of time, minutes for a big net) with a dynamic batch: the first axis of every input that shares the image's batch is `batch`, so one file
    serves batch 1 and batch N. A net whose layers fix the batch is exported at its own."""
    import torch
    from torch.export import Dim

    renames = getattr(module, "caffe_input_names", {})
    shapes = {renames.get(name, name): tuple(shape) for name, shape in inputs.items() if shape}
    batch = next(iter(shapes.values()))[0] if shapes else None
    batched = [name for name, shape in shapes.items() if shape[0] == batch]
    dim = Dim("batch", min=1, max=1 << 16)
    dynamic = {name: ({0: dim} if name in batched else None) for name in shapes}
    # examples where the weights are, in their precision (a CUDA or bf16 module traces with
    # its own kind of input); a batch of 2: torch.export specialises axes of size 1
    weight = next(module.parameters(), torch.zeros(()))
    like = {"device": weight.device, "dtype": weight.dtype}
    example = {name: torch.zeros((2,) + shape[1:] if name in batched else shape, **like)
               for name, shape in shapes.items()}
    try:
        return _export(module, example, dynamic, out, fmt)
    except Exception as exc:  # noqa: BLE001  the net fixes its batch: export it as declared
        print(f"note: {EXPORTS[fmt]} has a fixed batch of {batch} ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0][:160]})", file=sys.stderr)
        return _export(module, {name: torch.zeros(shape, **like) for name, shape in
                                shapes.items()}, None, out, fmt)


def _export(module, example: dict, dynamic, out: Path, fmt: str) -> str:
    import torch

    if fmt in ("pt2", "aoti"):
        program = torch.export.export(module, (), example, dynamic_shapes=dynamic)
        if fmt == "aoti":
            # kernels that follow the caller's thread count (netdef/fastpath.py)
            torch._inductor.aoti_compile_and_package(
                program, package_path=str(out / EXPORTS[fmt]),
                inductor_configs={"cpp.dynamic_threads": True})
        else:
            torch.export.save(program, str(out / EXPORTS[fmt]))
        return EXPORTS[fmt]
    with torch.no_grad():
        outputs = list(module(**example))
    program = torch.onnx.export(module, (), kwargs=example, dynamo=True, dynamic_shapes=dynamic,
                                input_names=list(example), output_names=outputs, verbose=False)
    program.save(str(out / "model.onnx"))
    return "model.onnx"
