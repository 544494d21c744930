"""ONNX Runtime as the engine of netdef's fast CPU forwards (`netdef.fast`, `run --fast`).

A loaded module runs on torch's OpenMP threads, which split every op evenly between them: when
other processes share the cores, each op waits for whichever of its threads the scheduler has
parked. ONNX Runtime's pool hands out blocks of an op to whichever thread runs, and the caller
takes back the blocks no worker has started. On the nine-net zoo it ran in half OpenCV's time
quiet and slowed down less than OpenCV under load, where the loaded module slowed down more
(docs/benchmarks.md, "ONNX Runtime"). Its threads sleep as soon as they run out of work: when
they spin first (ONNX Runtime's default), they take the cores from the caller's other work.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch


def available() -> bool:
    """Whether onnxruntime and torch's ONNX exporter (onnx, onnxscript) are installed; found,
    not imported: importing onnx and onnxscript takes 1.4 s, which a cached model never needs."""
    return all(importlib.util.find_spec(name) is not None
               for name in ("onnx", "onnxruntime", "onnxscript"))


def session(path: Path, threads: int, optimized_to: Path | None = None, spin: bool = False):
    """An ONNX Runtime CPU session on `threads` threads that sleep, not spin, when idle (`spin`:
    ONNX Runtime's default, which bench/bench_ort.py compares); with `optimized_to`, its
    optimized graph is also written there."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if optimized_to is not None:
        options.optimized_model_filepath = str(optimized_to)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", str(int(spin)))
    options.add_session_config_entry("session.inter_op.allow_spinning", str(int(spin)))
    # errors only: its warning that an optimized graph fits this CPU alone is what the cache
    # key already answers (optimize_in_place)
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def optimize_in_place(path: Path) -> None:
    """model.onnx replaced by the graph ONNX Runtime makes of it (blocked layouts, prepacked
    weights): a session on that starts in 1.3 s on FCN-8s, against 3.3 s. It fits this CPU only
    (the layouts follow the vector width), so a cache keeps it per CPU. The file stays as it
    was when ONNX Runtime cannot save the graph (over 2 GB in one file)."""
    optimized = path.with_name("optimized-" + path.name)
    try:
        session(path, 1, optimized_to=optimized)
        os.replace(optimized, path)
    except Exception:  # noqa: BLE001  model.onnx as exported still runs
        optimized.unlink(missing_ok=True)


class OnnxFile:
    """`run(**blobs)` -> {blob name: float32 tensor} for an exported model.onnx. `renames`
    maps Caffe input names that are not identifiers to the exported forward's arguments."""

    def __init__(self, path: Path, renames: dict):
        self.session = session(path, torch.get_num_threads())
        self.renames = renames
        self.outputs = [output.name for output in self.session.get_outputs()]

    def __call__(self, **blobs):
        feeds = {self.renames.get(name, name): _array(value) for name, value in blobs.items()}
        arrays = self.session.run(self.outputs, feeds)
        return {name: torch.from_numpy(array) for name, array in zip(self.outputs, arrays)}


def _array(value) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return np.ascontiguousarray(array, np.float32 if array.dtype.kind == "f" else None)


TERMINAL_COLOURS = re.compile(r"\x1b\[[0-9;]*m")


def why(exc: Exception) -> str:
    """The first line of an exporter's or runtime's error, without its terminal colours."""
    first = (str(exc).splitlines() or [""])[0]
    return f"{type(exc).__name__}: {TERMINAL_COLOURS.sub('', first)[:200]}"


class OnnxNet:
    """`net(**blobs)` -> {blob name: float32 tensor}: a CPU module from netdef.load, exported to
    ONNX at the first call for each image size (the batch stays free where the net allows) and
    run by ONNX Runtime on the thread count torch had then. A net the exporter cannot take runs
    as `fallback()`."""

    MAX_SIZES = 16  # a net fed images of every size keeps the newest sessions

    def __init__(self, module: torch.nn.Module, fallback):
        self.module = module.eval()
        self.build_fallback = fallback
        self.fallback = None  # built when the exporter refuses the net
        self.renames = dict(getattr(module, "caffe_input_names", {}))
        self.sizes = {}  # input shapes, past the batch when that is free -> OnnxFile

    def __call__(self, **blobs):
        if self.fallback is not None:
            return self.fallback(**blobs)
        shapes = {name: tuple(value.shape) for name, value in blobs.items()}
        run = self.sizes.get(_key(shapes, True)) or self.sizes.get(_key(shapes, False))
        if run is not None:
            return run(**blobs)
        try:  # the first forward too: a kernel ONNX Runtime lacks may show only then
            return self._exported(shapes)(**blobs)
        except Exception as exc:  # noqa: BLE001  any op the exporter or runtime refuses
            warnings.warn(f"netdef.fast: ONNX Runtime cannot run this net ({why(exc)}); "
                          "torch.compile runs it instead", stacklevel=2)
            self.fallback = self.build_fallback()
            return self.fallback(**blobs)

    def _exported(self, shapes: dict) -> OnnxFile:
        from netdef.compiler.codegen import export_program

        with tempfile.TemporaryDirectory(prefix="netdef-onnx-") as folder, quiet_exporter():
            export_program(self.module, shapes, Path(folder), "onnx")
            run = OnnxFile(Path(folder) / "model.onnx", self.renames)  # read in whole
        fixed = any(isinstance(arg.shape[0], int) for arg in run.session.get_inputs())
        self.sizes[_key(shapes, fixed)] = run
        if len(self.sizes) > self.MAX_SIZES:
            del self.sizes[next(iter(self.sizes))]
        return run


def _key(shapes: dict, with_batch: bool) -> tuple:
    return tuple((name, shape if with_batch else shape[1:]) for name, shape in shapes.items())


@contextlib.contextmanager
def quiet_exporter():
    """An export for netdef's engine without the exporter's notes on itself (torchvision's ops
    it skips, deprecations inside torch), netdef's note on a fixed batch, or the traced graph
    torch.export prints when it fails (a thousand lines for the CRF-RNN net): they say nothing
    to a caller of `fast` that the exception does not, and the exception still raises.
    `compile --format onnx` leaves them on."""
    logger = logging.getLogger("torch")  # torch.onnx, and torch.export beneath it
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)
