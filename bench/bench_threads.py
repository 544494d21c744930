"""netdef's free-core threads (netdef/runtime/threads.py) against a fixed 2 threads, quiet and
busy, with OpenCV 4.12's Caffe importer as the peer: optimize=True modules, interleaved in one
process, one forward of each per round. "Busy" is the same rounds while two processes spin on
the same cores (started and stopped by the bench). Prints, per net, each one's slowdown (busy
median over quiet median) and the geometric means.

Run: python bench/bench_threads.py [--nets NAME,...] [--rounds N] [--repeats N]
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import netdef  # first: netdef sets its OpenMP default before torch loads  # isort: skip
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_zoo import cpu_kind, geomean, medians, runners, spin, zoo  # noqa: E402

SMALL_OPS = "nsfw,ResNet-50,GoogLeNet,MobileNet,SqueezeNet,DenseNet-121"


def slowdowns(prototxt, weights, shape, rounds: int) -> dict:
    """kind -> (quiet ms, busy ms) for free-core threads, fixed 2 threads and OpenCV."""
    free = netdef.load(prototxt, weights, optimize=True)
    fixed = netdef.load(prototxt, weights, optimize=True)
    fixed.caffe_forward_context = None  # always torch's 2 threads
    runs = runners(prototxt, weights, shape, free=free, fixed=fixed)
    quiet = medians(runs, rounds)
    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(2)]
    for process in spinners:
        process.start()
    time.sleep(0.5)
    try:
        busy = medians(runs, rounds)
    finally:
        for process in spinners:
            process.terminate()
    return {kind: (quiet[kind], busy[kind]) for kind in runs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nets", default=SMALL_OPS)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import cv2

    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    print(f"# {cpu_kind()}, torch {torch.__version__}, OpenCV {cv2.__version__}, 2 threads "
          f"each; {args.rounds} quiet and {args.rounds} busy rounds; slowdown = busy / quiet")
    print("| repeat | net | free quiet ms | free busy ms | fixed quiet ms | fixed busy ms | "
          "OpenCV quiet ms | OpenCV busy ms | slowdown free | slowdown fixed | slowdown OpenCV |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        nets = zoo(Path(tmp), args.nets.split(","))
        for repeat in range(1, args.repeats + 1):
            rows = []
            for name, files in nets.items():
                times = slowdowns(*files, args.rounds)
                row = {kind: busy / quiet for kind, (quiet, busy) in times.items()}
                rows.append(row)
                cells = " | ".join(f"{times[k][0]:.1f} | {times[k][1]:.1f}"
                                   for k in ("free", "fixed", "opencv"))
                print(f"| {repeat} | {name} | {cells} | {row['free']:.2f} | {row['fixed']:.2f} | "
                      f"{row['opencv']:.2f} |", flush=True)
            means = {kind: geomean(row[kind] for row in rows) for kind in rows[0]}
            print(f"| {repeat} | **geometric mean** | | | | | | | **{means['free']:.2f}** | "
                  f"**{means['fixed']:.2f}** | **{means['opencv']:.2f}** |", flush=True)


if __name__ == "__main__":
    main()
