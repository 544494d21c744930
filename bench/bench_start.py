"""How fast does a compiled net start? `netdef compile` FCN-8s (500 x 500, fillers: 134 M
values, a 537 MB weights file), then in fresh processes, after torch is imported: import the
compiled model.py and `load()` it (the weights file in the page cache, as on a second run), and
the first forward. Also the same start as model.py did it before building its learned layers
on the meta device: every Conv2d initialised, then the file's tensors copied in. Then
`netdef run --fast` with its file in the cache (model.onnx for ONNX Runtime, the CPU default,
and the AOTInductor package): the whole command after torch's import, less the file's forward.

    python bench/bench_start.py [--runs 5]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = """
import sys, time
import torch
torch.set_num_threads(2)
start = time.perf_counter()
sys.path.insert(0, sys.argv[1])
import model
if sys.argv[2] == "new":
    net = model.load()
else:  # the way model.py started before: initialise every layer, then copy the file in
    from safetensors.torch import load_file
    from pathlib import Path
    cls = next(v for v in vars(model).values() if isinstance(v, type) and
               issubclass(v, torch.nn.Module) and v.__module__ == "model")
    net = cls()
    net.load_state_dict(load_file(str(Path(sys.argv[1]) / "weights.safetensors")))
    if model.CHANNELS_LAST:
        net = net.to(memory_format=torch.channels_last)
    net = net.eval()
loaded = time.perf_counter()
with torch.no_grad():
    net(data=torch.zeros(1, 3, 500, 500))
print(loaded - start, time.perf_counter() - loaded)
"""


RUN_FAST = """
import sys, time
import torch
torch.set_num_threads(2)
start = time.perf_counter()
from netdef.cli import main
main(["run", sys.argv[1], "--fast", "--engine", sys.argv[5], "--input", "data=" + sys.argv[2],
      "--out", sys.argv[3]])
whole = time.perf_counter() - start
import glob, os
from pathlib import Path
[path] = glob.glob(os.path.join(sys.argv[4], "compiled", "*", "model*"))
if sys.argv[5] == "onnxruntime":
    from netdef.onnxengine import OnnxFile
    run = OnnxFile(Path(path), {})
else:
    from netdef.fastpath import load_package
    run = load_package(path)
again = time.perf_counter()
with torch.no_grad():
    run(data=torch.zeros(1, 3, 500, 500))
print(whole, time.perf_counter() - again)
"""

ENGINES = {"onnxruntime": "model.onnx, ONNX Runtime (the CPU default)",
           "inductor": "AOTInductor package"}


def run_fast(folder: str, runs: int, engine: str) -> list[tuple[float, float]]:
    """`netdef run --fast` on FCN-8s with its exported file in the cache: the whole command
    after torch's import, and a forward of that file (what the command spends computing)."""
    import numpy as np

    np.save(os.path.join(folder, "x.npy"), np.zeros((1, 3, 500, 500), np.float32))
    env = dict(os.environ, NETDEF_CACHE=os.path.join(folder, "cache"))
    command = [sys.executable, "-c", RUN_FAST, os.path.join(ROOT, "models", "fcn8s.prototxt"),
               os.path.join(folder, "x.npy"), os.path.join(folder, "y.npz"), env["NETDEF_CACHE"],
               engine]
    subprocess.run(command, check=True, env=env, capture_output=True)  # exports the file
    return [tuple(map(float, subprocess.run(command, check=True, env=env, capture_output=True,
                                            text=True).stdout.split()[-2:]))
            for _ in range(runs)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-m", "netdef", "compile",
                        os.path.join(ROOT, "models", "fcn8s.prototxt"), "-o", folder],
                       check=True, stdout=subprocess.DEVNULL)
        times = {"new": [], "old": []}
        for _ in range(args.runs):  # interleaved
            for way in times:
                out = subprocess.run([sys.executable, "-c", PROBE, folder, way], check=True,
                                     capture_output=True, text=True).stdout.split()
                times[way].append(tuple(map(float, out)))
    import torch

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}; compiled FCN-8s (optimized), median of {args.runs} fresh "
          "processes, torch already imported; seconds")
    print("| model.py start | import + load() | first forward (1 x 3 x 500 x 500) |")
    print("|---|---|---|")
    labels = {"new": "learned layers built on meta, the file's tensors assigned (now)",
              "old": "every layer initialised, then the file copied in (before)"}
    for way, rows in times.items():
        load = statistics.median(r[0] for r in rows)
        forward = statistics.median(r[1] for r in rows)
        print(f"| {labels[way]} | {load:.2f} | {forward:.2f} |")
    print()
    print("| `netdef run --fast`, file cached, after torch's import | whole command | "
          "of which the forward | start (the rest) |")
    print("|---|---|---|---|")
    for engine, label in ENGINES.items():
        with tempfile.TemporaryDirectory() as folder:
            rows = run_fast(folder, args.runs, engine)
        whole = statistics.median(r[0] for r in rows)
        forward = statistics.median(r[1] for r in rows)
        print(f"| FCN-8s, {label}, 1x3x500x500 .npy in, .npz out | {whole:.2f} | "
              f"{forward:.2f} | {whole - forward:.2f} |", flush=True)


if __name__ == "__main__":
    main()
