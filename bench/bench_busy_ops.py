"""Busy machines: which ops of an optimize=True module lose most under load. torch's profiler
over the same forwards quiet and while two processes spin on the same cores, at torch's 2
threads always (the thread chooser off), each op's self time per forward in both, largest busy
time first. The profiler adds its own cost, so compare the columns, not the totals with other
benches.

Run: python bench/bench_busy_ops.py [--nets NAME,...] [--forwards N] [--top N]
"""
from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from pathlib import Path

import netdef  # first: netdef sets its OpenMP default before torch loads  # isort: skip
import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_zoo import busy, cpu_kind, zoo  # noqa: E402


def op_times(forward, forwards: int) -> tuple:
    """The median forward in ms and op name -> (self ms per forward, calls per forward)."""
    walls = []
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(forwards):
            start = time.perf_counter()
            forward()
            walls.append((time.perf_counter() - start) * 1000)
    ops = collections.defaultdict(lambda: [0.0, 0])
    for event in profiler.key_averages():
        ops[event.key][0] += event.self_cpu_time_total / forwards / 1000
        ops[event.key][1] += event.count // forwards
    return statistics.median(walls), ops


def report(name: str, forward, forwards: int, top: int) -> None:
    for _ in range(5):
        forward()  # warm-up: packed weights, oneDNN's primitives
    quiet_ms, quiet = op_times(forward, forwards)
    with busy():
        busy_ms, loaded = op_times(forward, forwards)
    print(f"\n{name}: median forward {quiet_ms:.2f} ms quiet, {busy_ms:.2f} ms busy "
          f"({busy_ms / quiet_ms:.2f}x)\n\n| op | calls | quiet ms | busy ms | busy / quiet |\n"
          "|---|---|---|---|---|")
    for op in sorted(loaded, key=lambda key: -loaded[key][0])[:top]:
        before, after = quiet.get(op, (0.0, 0))[0], loaded[op][0]
        ratio = f"{after / before:.2f}" if before else "-"
        print(f"| {op} | {loaded[op][1]} | {before:.2f} | {after:.2f} | {ratio} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nets", default="GoogLeNet,MobileNet,DenseNet-121")
    parser.add_argument("--forwards", type=int, default=20)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"# {cpu_kind()}, torch {torch.__version__}, optimize=True at 2 threads (no "
          f"chooser); {args.forwards} forwards quiet, then as many busy")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (prototxt, weights, shape) in zoo(Path(tmp), args.nets.split(",")).items():
            module = netdef.load(prototxt, weights, optimize=True)
            module.caffe_thread_chooser = None  # always the caller's 2 threads
            x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
            tensor = torch.from_numpy(x)

            def forward():
                with torch.no_grad():
                    module(data=tensor)
            report(name, forward, args.forwards, args.top)


if __name__ == "__main__":
    main()
