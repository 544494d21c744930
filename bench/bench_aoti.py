"""`compile --format aoti` against optimize=True and OpenCV 4.12 on some of the zoo (the AOT
compile takes minutes per big net on two cores), 2 threads each, interleaved in one process;
also the package's compile and load times. `compile` optimizes by default, so the package is
the optimized module's (BatchNorm folded, channels_last), loaded as `run --fast` loads it.

With --busy-rounds N, the same three again while two processes spin on the same cores, and
each one's slowdown (busy median over quiet median).

With --fast, netdef.fast of the optimized module too (torch.compile in this process).

Run: python bench/bench_aoti.py [--nets nsfw,MobileNet,...] [--rounds N] [--busy-rounds N]
     [--fast] [--gap-ms MS]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import netdef  # first: netdef sets its OpenMP default before torch loads  # isort: skip
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_zoo import busy_medians, geomean, medians, runners, zoo  # noqa: E402

from netdef.compiler.codegen import compile_net  # noqa: E402
from netdef.fastpath import load_package  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nets", default="nsfw,MobileNet,SqueezeNet,GoogLeNet")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--busy-rounds", type=int, default=0)
    parser.add_argument("--gap-ms", type=float, default=0.0,
                        help="sleep before each forward: no thread of the one before still spins")
    parser.add_argument("--fast", action="store_true",
                        help="also netdef.fast of the optimized module (torch.compile in-process)")
    args = parser.parse_args()
    import cv2

    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    ours = ["optimized", "aoti"] + (["fast"] if args.fast else [])
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, OpenCV {cv2.__version__}, 2 threads each, {args.rounds} rounds, "
          f"{args.gap_ms:g} ms gap, GOMP_SPINCOUNT {os.environ.get('GOMP_SPINCOUNT')}")
    print("| net | compile s | package load s | " + " | ".join(f"{k} ms" for k in ours)
          + " | OpenCV ms | " + " | ".join(f"{k} / OpenCV" for k in ours) + " |")
    print("|---" * (4 + 2 * len(ours)) + "|")
    ratios, slowdowns = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (prototxt, weights, shape) in zoo(Path(tmp), args.nets.split(",")).items():
            modules, compiled, loaded = compiled_kinds(name, prototxt, weights, shape, Path(tmp),
                                                       args.fast)
            runs = runners(prototxt, weights, shape, **modules)
            med = medians(runs, args.rounds, args.gap_ms / 1000)
            ratios.append({kind: med[kind] / med["opencv"] for kind in ours})
            print(f"| {name} | {compiled} | {loaded:.2f} | "
                  + " | ".join(f"{med[k]:.1f}" for k in ours) + f" | {med['opencv']:.1f} | "
                  + " | ".join(f"{ratios[-1][k]:.2f}x" for k in ours) + " |", flush=True)
            if args.busy_rounds:
                busy = busy_medians(runs, args.busy_rounds, args.gap_ms / 1000)
                slowdowns.append({kind: busy[kind] / med[kind] for kind in runs})
                print(f"|   busy {name} | | | " + " | ".join(f"{busy[k]:.1f}" for k in ours)
                      + f" | {busy['opencv']:.1f} | slowdown " + ", ".join(
                          f"{kind} {value:.2f}" for kind, value in slowdowns[-1].items()) + " |",
                      flush=True)
    print("| **geometric mean** | | " + "| " * (len(ours) + 1) + " | ".join(
        f"**{geomean(r[k] for r in ratios):.2f}x**" for k in ours) + " |")
    if slowdowns:
        print("busy slowdown, geometric mean: " + ", ".join(
            f"{kind} {geomean(row[kind] for row in slowdowns):.2f}" for kind in slowdowns[0]))


def compiled_kinds(name, prototxt, weights, shape, folder: Path, with_fast: bool):
    """optimize=True, its AOTInductor package (opened as `run --fast` opens it) and, if asked,
    netdef.fast of it; the compile seconds ("aoti/fast") and the package's load seconds."""
    start = time.perf_counter()
    compile_net(prototxt, folder / name, weights=weights, fmt="aoti")
    seconds = [f"{time.perf_counter() - start:.0f}"]
    start = time.perf_counter()
    package = load_package(folder / name / "model_aoti.pt2")
    loaded = time.perf_counter() - start
    optimized = netdef.load(prototxt, weights, optimize=True)
    modules = {"optimized": optimized, "aoti": package}
    if with_fast:
        modules["fast"] = netdef.fast(optimized)
        start = time.perf_counter()
        with torch.no_grad():
            modules["fast"](data=torch.zeros(shape))  # the first call compiles
        seconds.append(f"{time.perf_counter() - start:.0f}")
    return modules, "/".join(seconds), loaded


if __name__ == "__main__":
    main()
