"""`compile --format aoti` against optimize=True and OpenCV 4.12 on some of the zoo (the AOT
compile takes minutes per big net on two cores), 2 threads each, interleaved in one process;
also the package's compile and load times. `compile` optimizes by default, so the package is
the optimized module's (BatchNorm folded, channels_last), loaded as `run --fast` loads it.

With --busy-rounds N, the same three again while two processes spin on the same cores, and
each one's slowdown (busy median over quiet median).

Run: python bench/bench_aoti.py [--nets nsfw,MobileNet,...] [--rounds N] [--busy-rounds N]
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
    args = parser.parse_args()
    import cv2

    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, OpenCV {cv2.__version__}, 2 threads each, {args.rounds} rounds, "
          f"{args.gap_ms:g} ms gap")
    print("| net | AOT compile s | package load s | optimize=True ms | aoti ms | OpenCV ms | "
          "optimized / OpenCV | aoti / OpenCV |")
    print("|---|---|---|---|---|---|---|---|")
    ratios, slowdowns = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (prototxt, weights, shape) in zoo(Path(tmp), args.nets.split(",")).items():
            start = time.perf_counter()
            compile_net(prototxt, Path(tmp) / name, weights=weights, fmt="aoti")
            compiled = time.perf_counter() - start
            start = time.perf_counter()
            package = load_package(Path(tmp) / name / "model_aoti.pt2")
            loaded = time.perf_counter() - start
            optimized = netdef.load(prototxt, weights, optimize=True)
            runs = runners(prototxt, weights, shape, optimized=optimized, aoti=package)
            med = medians(runs, args.rounds, args.gap_ms / 1000)
            ratios.append((med["optimized"] / med["opencv"], med["aoti"] / med["opencv"]))
            print(f"| {name} | {compiled:.0f} | {loaded:.2f} | {med['optimized']:.1f} | "
                  f"{med['aoti']:.1f} | {med['opencv']:.1f} | {ratios[-1][0]:.2f}x | "
                  f"{ratios[-1][1]:.2f}x |", flush=True)
            if args.busy_rounds:
                busy = busy_medians(runs, args.busy_rounds, args.gap_ms / 1000)
                slowdowns.append({kind: busy[kind] / med[kind] for kind in runs})
                print(f"|   busy {name} | | | {busy['optimized']:.1f} | {busy['aoti']:.1f} | "
                      f"{busy['opencv']:.1f} | slowdown " + ", ".join(
                          f"{kind} {value:.2f}" for kind, value in slowdowns[-1].items()) + " |",
                      flush=True)
    print(f"| **geometric mean** | | | | | | **{geomean(r[0] for r in ratios):.2f}x** | "
          f"**{geomean(r[1] for r in ratios):.2f}x** |")
    if slowdowns:
        print("busy slowdown, geometric mean: " + ", ".join(
            f"{kind} {geomean(row[kind] for row in slowdowns):.2f}" for kind in slowdowns[0]))


if __name__ == "__main__":
    main()
