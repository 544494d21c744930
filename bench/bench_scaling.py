"""What a busy machine leaves each side, against what it could: optimize=True modules and
OpenCV 4.12's Caffe importer on the zoo, each at 1 and 2 threads quiet and at 2 threads while two
processes spin on the same 2 cores, interleaved in one process.

With two spinners and two threads of its own, a process gets about one core's worth of time
under Linux's fair scheduler, so its best possible busy forward is its own quiet forward at one
thread. Hence, per side:
- scaling = quiet 1 thread / quiet 2 threads: the best possible busy slowdown;
- slowdown = busy 2 threads / quiet 2 threads: #17's busy measure;
- loss = busy 2 threads / quiet 1 thread: how far the side falls short of its share (1.0 = none).
slowdown = scaling x loss, so a side that scales better on two idle cores starts #17's busy
measure with a higher floor.

Run: python bench/bench_scaling.py [--nets NAME,...] [--rounds N] [--busy-rounds N]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import netdef  # first: netdef sets its OpenMP default before torch loads  # isort: skip
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_zoo import busy_medians, cpu_kind, geomean, medians, runners, zoo  # noqa: E402


def threads(count: int) -> None:
    """Both sides at `count` threads, set once per block of rounds. Switched at every forward,
    a first version timed two threads no faster than one (SqueezeNet 12.2 against 12.3 ms):
    each switch wakes or rebuilds the thread pools."""
    import cv2

    torch.set_num_threads(count)
    cv2.setNumThreads(count)


def measure(prototxt, weights, shape, rounds: int, busy_rounds: int) -> dict:
    runs = runners(prototxt, weights, shape,
                   netdef=netdef.load(prototxt, weights, optimize=True))
    threads(1)
    one = medians(runs, rounds)
    threads(2)
    two = medians(runs, rounds)
    busy = busy_medians(runs, busy_rounds)
    return {side: dict(one=one[side], two=two[side], busy=busy[side],
                       scaling=one[side] / two[side], slowdown=busy[side] / two[side],
                       loss=busy[side] / one[side])
            for side in runs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nets", default="", help="comma-separated names (default: all)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--busy-rounds", type=int, default=11)
    args = parser.parse_args()
    import cv2

    wanted = [name for name in args.nets.split(",") if name]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {cpu_kind()}, "
          f"torch {torch.__version__}, OpenCV {cv2.__version__}; quiet {args.rounds} rounds "
          f"at 1 and 2 threads, busy {args.busy_rounds} rounds at 2 threads; medians in ms")
    print("| net | side | quiet 2 thr | quiet 1 thr | busy 2 thr | scaling | slowdown | loss |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (prototxt, weights, shape) in zoo(Path(tmp), wanted).items():
            row = measure(prototxt, weights, shape, args.rounds, args.busy_rounds)
            rows.append(row)
            for side, cell in row.items():
                print(f"| {name} | {side} | {cell['two']:.1f} | {cell['one']:.1f} | "
                      f"{cell['busy']:.1f} | {cell['scaling']:.2f} | {cell['slowdown']:.2f} | "
                      f"{cell['loss']:.2f} |", flush=True)
    for side in ("netdef", "opencv"):
        means = {key: geomean(row[side][key] for row in rows)
                 for key in ("scaling", "slowdown", "loss")}
        print(f"| **geometric mean** | {side} | | | | **{means['scaling']:.2f}** | "
              f"**{means['slowdown']:.2f}** | **{means['loss']:.2f}** |")


if __name__ == "__main__":
    main()
