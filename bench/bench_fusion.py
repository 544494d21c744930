"""optimize=True with and without the convolution + ReLU fusion (ConvReLU), with OpenCV 4.12's
Caffe importer as the peer: quiet, 2 threads each, interleaved in one process (one forward of
each per round), on the zoo's nets (bench_zoo.py). Prints the medians and the ratios.

Run: python bench/bench_fusion.py [--rounds N] [--nets NAME,...]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import netdef  # first: netdef sets its OpenMP default before torch loads  # isort: skip
import torch

from netdef.compiler import optimize as passes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_zoo import cpu_kind, geomean, medians, runners, zoo  # noqa: E402


def unfused(prototxt, weights):
    """optimize=True with the fusion pass switched off for this one build."""
    kept = passes.fuse_convolution_relu
    passes.fuse_convolution_relu = lambda module: 0
    try:
        return netdef.load(prototxt, weights, optimize=True)
    finally:
        passes.fuse_convolution_relu = kept


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--nets", default="", help="comma-separated names (default: all)")
    args = parser.parse_args()
    import cv2

    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    print(f"# {cpu_kind()}, torch {torch.__version__}, OpenCV {cv2.__version__}, 2 threads "
          f"each, {args.rounds} quiet rounds; medians in ms")
    print("| net | unfused | fused | OpenCV | fused / unfused | unfused / OpenCV | "
          "fused / OpenCV |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        wanted = [name for name in args.nets.split(",") if name]
        for name, (prototxt, weights, shape) in zoo(Path(tmp), wanted).items():
            runs = runners(prototxt, weights, shape, unfused=unfused(prototxt, weights),
                           fused=netdef.load(prototxt, weights, optimize=True))
            ms = medians(runs, args.rounds)
            row = {"gain": ms["fused"] / ms["unfused"], "unfused": ms["unfused"] / ms["opencv"],
                   "fused": ms["fused"] / ms["opencv"]}
            rows.append(row)
            print(f"| {name} | {ms['unfused']:.1f} | {ms['fused']:.1f} | {ms['opencv']:.1f} | "
                  f"{row['gain']:.2f} | {row['unfused']:.2f}x | {row['fused']:.2f}x |",
                  flush=True)
    means = {key: geomean(row[key] for row in rows) for key in rows[0]}
    print(f"| **geometric mean** | | | | **{means['gain']:.2f}** | **{means['unfused']:.2f}x** | "
          f"**{means['fused']:.2f}x** |")


if __name__ == "__main__":
    main()
