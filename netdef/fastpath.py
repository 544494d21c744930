"""Inference-only fast paths for a loaded net. `fast`: torch.compile with the weights frozen
into the graph (constant folding, oneDNN conv+ReLU fusion on CPU); on CUDA also bf16
weights, channels_last activations and CUDA graphs. The first call compiles (tens of
seconds on a small CPU); later calls with the same shapes reuse it. On the CPU `fast` runs
ONNX Runtime instead when it is installed (netdef/onnxengine.py). `packaged`: a model.onnx or
an AOTInductor package kept in the cache, so that later processes (`netdef run --fast`) start
at once."""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch

from netdef.runtime.threads import chosen

# inductor's settings for netdef's compiled forwards: weights frozen into the graph, and
# kernels that ask OpenMP for the thread count at each call. Otherwise a count other than the
# machine's core count is baked in when they compile: the chooser could not move them, and a
# package compiled at 16 threads would run 16 on any machine.
COMPILED_KERNELS = {"freezing": True, "cpp.dynamic_threads": True}


class FastNet:
    """`fast(**inputs)` -> {blob name: float32 tensor}, like the module it wraps."""

    def __init__(self, module: torch.nn.Module, *, bf16: bool | None = None):
        device = next(iter(module.parameters()), torch.empty(0)).device
        # Caffe names that are not identifiers ('im-data'): a deep copy loses load()'s own
        # renaming, so the wrapper applies it
        self.renames = dict(getattr(module, "caffe_input_names", {}))
        self.cuda = device.type == "cuda"
        self.dtype = torch.bfloat16 if (self.cuda if bf16 is None else bf16) else torch.float32
        if self.dtype != torch.float32 or self.cuda:  # leave the caller's module as it was
            module = copy.deepcopy(module).to(dtype=self.dtype)
        module = module.eval()
        if self.cuda:
            module = module.to(memory_format=torch.channels_last)
        self.channels_last = self.cuda or getattr(module, "caffe_channels_last", False)
        self.module = module
        # the net's own generated forward, not the __call__ that every loaded net shares:
        # torch.compile keeps at most 8 graphs per code object, and the 9th net compiled in a
        # process would silently run eager
        self.compiled = torch.compile(module.forward,
                                      mode="reduce-overhead" if self.cuda else None)
        if not self.cuda:
            # a busy machine: one thread while that runs faster, on the module as loaded. The
            # graph's convolution weights are packed for the thread count it was compiled at:
            # on one thread nsfw ran 1.8x and MobileNet 7x slower than the loaded module, and
            # compiling it again for one thread stalls for 1-15 s (bench/results/
            # 2026-12-06-fast-one-thread-cpu.txt)
            self.forward = chosen(self.forward, on_one_thread=self.uncompiled)

    def __call__(self, **inputs):
        return self.forward(**inputs)

    def forward(self, **inputs):
        prepared = self._prepared(inputs)
        # read when a graph compiles (first call, new shapes): patch every call
        from torch._inductor import config
        with torch.no_grad(), config.patch(COMPILED_KERNELS):
            return _float(self.compiled(**prepared))

    def uncompiled(self, **inputs):
        """The same forward on the module as loaded (in this wrapper's precision)."""
        with torch.no_grad():
            return _float(self.module(**self._prepared(inputs)))

    def _prepared(self, inputs: dict) -> dict:
        prepared = {}
        for name, value in inputs.items():
            name = self.renames.get(name, name)
            if value.is_floating_point():
                value = value.to(self.dtype)
                if self.channels_last and value.dim() == 4:
                    value = value.contiguous(memory_format=torch.channels_last)
            prepared[name] = value
        return prepared


def _float(outputs: dict) -> dict:
    return {name: value.float() if value.is_floating_point() else value
            for name, value in outputs.items()}


class CompiledOrAsLoaded:
    """torch.compile's forward of a net ONNX Runtime cannot run, or the module as loaded once
    torch.compile has failed on it too (SSD's DetectionOutput: a C++ compile error, 2026-12-06):
    the caller gets the numbers either way, and a warning that says why."""

    def __init__(self, module: torch.nn.Module):
        self.net = FastNet(module, bf16=False)
        self.forward = self._compiled_first

    def __call__(self, **inputs):
        return self.forward(**inputs)

    def _compiled_first(self, **inputs):
        from netdef.onnxengine import why

        try:
            outputs = self.net(**inputs)
        except Exception as exc:  # noqa: BLE001  any graph inductor cannot compile
            warnings.warn(f"netdef.fast: torch.compile cannot compile this net either "
                          f"({why(exc)}); it runs as loaded", stacklevel=3)
            self.forward = self.net.uncompiled
            return self.forward(**inputs)
        self.forward = self.net
        return outputs


def fast(module: torch.nn.Module, *, bf16: bool | None = None, engine: str | None = None):
    """Wrap a module from netdef.load for fast inference. `engine="onnxruntime"`, the default
    for a float32 CPU module when onnxruntime is installed: the net exported to ONNX at its
    first call and run by ONNX Runtime, which is faster than torch.compile's kernels and keeps
    its speed better when other processes share the cores (netdef/onnxengine.py).
    `engine="inductor"`, the default otherwise: torch.compile (bf16 defaults to on for CUDA);
    on the CPU its forwards choose their thread count as the module's do (runtime/threads.py)."""
    from netdef import onnxengine

    if engine is None:
        weight = next(iter(module.parameters()), torch.empty(0))
        plain = weight.device.type == "cpu" and weight.dtype == torch.float32 and not bf16
        engine = "onnxruntime" if plain and onnxengine.available() else "inductor"
    if engine == "onnxruntime":
        return onnxengine.OnnxNet(module, fallback=lambda: CompiledOrAsLoaded(module))
    if engine != "inductor":
        raise ValueError(f"engine: 'onnxruntime' or 'inductor', not {engine!r}")
    return FastNet(module, bf16=bf16)


def cache_dir() -> Path:
    """Where netdef keeps what it downloads and compiles: $NETDEF_CACHE, else ~/.cache/netdef."""
    return Path(os.environ.get("NETDEF_CACHE", Path.home() / ".cache" / "netdef"))


def packaged(build, inputs: dict, identity: dict, fmt: str = "aoti"):
    """The net exported with a dynamic batch, from the cache when it was exported for the same
    `identity` (net and weights files, input shapes, settings, the CPU, torch and netdef
    versions), else exported now from `build()`'s module and kept; a hit builds nothing, so a
    later run starts at once. `fmt` "aoti": an AOTInductor package (compiled kernels; seconds
    to a minute); "onnx": a model.onnx that ONNX Runtime runs (netdef/onnxengine.py). Returns
    (a callable like the module, whether the cache had it, the file's path); the callable is
    None when this torch cannot load the package (see package_loads)."""
    from netdef.compiler.codegen import EXPORTS

    folder, hit = _cache_entry(build, inputs, identity, fmt)
    path = folder / EXPORTS[fmt]
    renames = json.loads((folder / "input_names.json").read_text())  # Caffe name -> argument
    if fmt == "onnx":
        from netdef.onnxengine import OnnxFile
        return OnnxFile(path, renames), hit, path
    if not package_loads(path):
        return None, hit, path
    runner = load_package(path)

    def run(**blobs):
        return dict(runner(**{renames.get(name, name): value for name, value in blobs.items()}))
    return run, hit, path


def _cache_entry(build, inputs: dict, identity: dict, fmt: str) -> tuple[Path, bool]:
    """The cache's folder for this export, written now unless it was there; whether it was."""
    from netdef import __version__
    from netdef.compiler.codegen import EXPORTS, export_program
    from netdef.onnxengine import optimize_in_place, quiet_exporter

    identity = {**identity, "torch": torch.__version__, "netdef": __version__, "format": fmt,
                "cpu": cpu_identity(), "inputs": {name: list(shape) for name, shape in
                                                  inputs.items()}}
    if fmt == "onnx":
        import onnxruntime
        identity["onnxruntime"] = onnxruntime.__version__
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
    folder = cache_dir() / "compiled" / key
    if (folder / EXPORTS[fmt]).exists() and (folder / "input_names.json").exists():
        return folder, True
    module = build()
    shutil.rmtree(folder, ignore_errors=True)  # an incomplete entry from an older netdef
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent))  # complete, or not there at all
    try:
        with quiet_exporter() if fmt == "onnx" else contextlib.nullcontext():
            export_program(module, inputs, staging, fmt)
    except BaseException:
        shutil.rmtree(staging)
        raise
    if fmt == "onnx":  # kept as ONNX Runtime optimizes it for this CPU
        optimize_in_place(staging / EXPORTS[fmt])
    (staging / "identity.json").write_text(json.dumps(identity, indent=2, sort_keys=True))
    (staging / "input_names.json").write_text(json.dumps(
        dict(getattr(module, "caffe_input_names", {}))))
    os.replace(staging, folder) if not folder.exists() else shutil.rmtree(staging)
    return folder, False


def cpu_identity() -> str:
    """The CPU's model and instruction sets: compiled kernels and ONNX Runtime's optimized
    graphs are built for them, and a cache on a shared home directory meets other CPUs."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine()
    wanted = [line for line in lines if line.startswith(("model name", "flags"))][:2]
    return hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:16]


def package_loads(path: Path) -> bool:
    """Whether this torch loads the package: tried once, in a child process, because a loader
    can take the process down (torch 2.11's did with CUDA packages on an H200, 2026-12-04:
    a segmentation fault in AOTIModelPackageLoader). The answer is kept beside the package."""
    marker = path.with_name("loads.json")
    if marker.exists():
        return bool(json.loads(marker.read_text()).get("loads"))
    # the child finds netdef where this process did, installed or not
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(entry for entry in sys.path if entry)}
    try:
        child = subprocess.run([sys.executable, "-c", "import sys\nfrom netdef.fastpath import "
                                "load_package\nload_package(sys.argv[1])", str(path)],
                               capture_output=True, text=True, timeout=600, env=env)
        record = {"loads": child.returncode == 0, "returncode": child.returncode,
                  "stderr": child.stderr[-2000:]}
    except subprocess.TimeoutExpired:
        record = {"loads": False, "returncode": None, "stderr": "loading took over 600 s"}
    marker.write_text(json.dumps(record, indent=2))
    return record["loads"]


def load_package(path):
    """An AOTInductor package as a callable taking the exported forward's keyword arguments.
    torch's C++ loader directly: `torch._inductor.aoti_load_package` first imports the
    compiler, about 2 s of the 3 s FCN-8s took to start (bench/bench_start.py)."""
    import torch.utils._pytree as pytree

    loader_type = getattr(torch._C._aoti, "AOTIModelPackageLoader", None)
    if loader_type is None:  # an older torch: its own loader
        return chosen(torch._inductor.aoti_load_package(str(path)))
    loader = loader_type(str(path), "model", False, 1, -1)
    inputs, outputs = (pytree.treespec_loads(spec) for spec in loader.get_call_spec())
    names = inputs.child(1).context  # the spec of (args, kwargs): forward takes kwargs only

    def run(**blobs):
        return dict(pytree.tree_unflatten(loader.boxed_run([blobs[name] for name in names]),
                                          outputs))
    return chosen(run)


def file_identity(path) -> dict | None:
    """A file as a cache key sees it: its contents' hash for small files (nets), its path,
    size and modification time for big ones (weights), which hashing would take seconds."""
    if path is None:
        return None
    path = Path(path).resolve()
    stat = path.stat()
    if stat.st_size <= 16 << 20:
        return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
