"""ONNX Runtime as netdef's CPU engine: `compile --format onnx` of the optimized module run by
onnxruntime, against netdef.load(optimize=True) and OpenCV 4.12, 2 intra-op threads each,
interleaved in one process, quiet and busy (two spinning processes, started by the bench).

ONNX Runtime's thread pool hands out work in blocks that whichever thread runs takes, and the
caller does not wait for a worker that never started (it takes the work back), which is what
OpenCV's pool does and torch's static OpenMP split does not (docs/benchmarks.md, "Busy
machines").

Run: python bench/bench_ort.py [--nets NAME,...] [--rounds N] [--busy-rounds N]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import netdef  # first: netdef sets its OpenMP default before torch loads  # isort: skip
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_zoo import busy_medians, geomean, medians, runners, zoo  # noqa: E402

from netdef.compiler.codegen import compile_net  # noqa: E402
from netdef.onnxengine import session as onnx_session  # noqa: E402

OURS = ("optimized", "ort")
SPIN = os.environ.get("ORT_SPIN", "0") == "1"  # ONNX Runtime's default; netdef turns it off


def kinds(name, prototxt, weights, shape, folder: Path) -> dict:
    """kind -> forward: optimize=True, its ONNX export under onnxruntime, OpenCV."""
    compile_net(prototxt, folder / name, weights=weights, fmt="onnx")
    session = onnx_session(folder / name / "model.onnx", 2, spin=SPIN)
    runs = runners(prototxt, weights, shape, optimized=netdef.load(prototxt, weights,
                                                                   optimize=True))
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    feed = {session.get_inputs()[0].name: x}
    runs["ort"] = lambda: session.run(None, feed)
    reference = runs_output(prototxt, weights, x)
    got = session.run(None, feed)
    error = max(float(np.abs(g - r).max() / (np.abs(r).max() + 1e-12))
                for g, r in zip(got, reference))
    return runs, error


def runs_output(prototxt, weights, x) -> list:
    module = netdef.load(prototxt, weights, optimize=True)
    with torch.no_grad():
        out = module(data=torch.from_numpy(x))
    return [value.numpy() for value in out.values()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nets", default="")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--busy-rounds", type=int, default=15)
    args = parser.parse_args()
    import cv2
    import onnxruntime

    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, onnxruntime {onnxruntime.__version__}, OpenCV "
          f"{cv2.__version__}, 2 threads each; quiet {args.rounds} rounds, busy "
          f"{args.busy_rounds}; medians in ms")
    print("| net | max rel. error ort | optimized | ort | OpenCV | optimized / OpenCV | "
          "ort / OpenCV | busy: optimized | ort | OpenCV | slowdown optimized | ort | OpenCV |")
    print("|---" * 13 + "|")
    rows = []
    wanted = [n for n in args.nets.split(",") if n]
    with tempfile.TemporaryDirectory() as tmp:
        for name, (prototxt, weights, shape) in zoo(Path(tmp), wanted).items():
            runs, error = kinds(name, prototxt, weights, shape, Path(tmp))
            quiet = medians(runs, args.rounds)
            busy = busy_medians(runs, args.busy_rounds)
            row = {f"{k} / OpenCV": quiet[k] / quiet["opencv"] for k in OURS}
            row.update({f"slowdown {k}": busy[k] / quiet[k] for k in (*OURS, "opencv")})
            rows.append(row)
            print(f"| {name} | {error:.1e} | "
                  + " | ".join(f"{quiet[k]:.1f}" for k in (*OURS, "opencv")) + " | "
                  + " | ".join(f"{row[f'{k} / OpenCV']:.2f}x" for k in OURS) + " | "
                  + " | ".join(f"{busy[k]:.1f}" for k in (*OURS, "opencv")) + " | "
                  + " | ".join(f"{row[f'slowdown {k}']:.2f}" for k in (*OURS, "opencv"))
                  + " |", flush=True)
    means = {key: geomean(row[key] for row in rows) for key in rows[0]}
    print("| **geometric mean** | | | | | " + " | ".join(
        f"**{means[f'{k} / OpenCV']:.2f}x**" for k in OURS) + " | | | | " + " | ".join(
        f"**{means[f'slowdown {k}']:.2f}**" for k in (*OURS, "opencv")) + " |")


if __name__ == "__main__":
    main()
