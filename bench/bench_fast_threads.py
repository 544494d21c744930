"""netdef.fast on one thread, where the thread chooser sends a CPU forward on a busy machine:
the loaded optimize=True module, the graph compiled at 2 threads run on one (its convolution
weights are packed for 2), and the stall of compiling the graph again for one thread.
Medians of interleaved forwards, no other load.

Run: python bench/bench_fast_threads.py [--nets NAME,...] [--rounds N]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import netdef  # first: netdef sets its OpenMP default before torch loads  # isort: skip
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_zoo import cpu_kind, zoo  # noqa: E402

from netdef.fastpath import COMPILED_KERNELS  # noqa: E402


def compiled(module, **options):
    graph = torch.compile(module.forward, options=options or None)

    def run(**blobs):
        from torch._inductor import config
        with torch.no_grad(), config.patch(COMPILED_KERNELS):
            return graph(**blobs)
    return run


def ms(forward, threads: int, blobs: dict) -> float:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    with torch.no_grad():
        forward(**blobs)
    torch.set_num_threads(2)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nets", default="nsfw,MobileNet,SqueezeNet,GoogLeNet,DenseNet-121")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"# {cpu_kind()}, torch {torch.__version__}, medians of {args.rounds} rounds in ms")
    print("| net | module, 2 threads | graph, 2 | module, 1 | graph compiled at 2, run on 1 | "
          "compiling again for 1 thread, s |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (prototxt, weights, shape) in zoo(Path(tmp), args.nets.split(",")).items():
            module = netdef.load(prototxt, weights, optimize=True)
            module.caffe_thread_chooser = None
            blobs = {"data": torch.randn(shape).contiguous(memory_format=torch.channels_last)}
            # the guard on global state (thread count included) left out: the 2-thread graph
            # runs on one thread instead of compiling again
            any_count = compiled(module, guard_filter_fn=lambda guards: [
                entry.guard_type != "GLOBAL_STATE" for entry in guards])
            other = netdef.load(prototxt, weights, optimize=True)  # torch.compile's graphs are
            other.caffe_thread_chooser = None  # kept per function: this one compiles its own
            per_count = compiled(other)
            ms(any_count, 2, blobs), ms(per_count, 2, blobs)
            again = ms(per_count, 1, blobs) / 1000
            kinds = {"module2": (module, 2), "graph2": (any_count, 2), "module1": (module, 1),
                     "graph2on1": (any_count, 1)}
            times = {kind: [] for kind in kinds}
            for forward, threads in kinds.values():
                ms(forward, threads, blobs)
            for _ in range(args.rounds):
                for kind, (forward, threads) in kinds.items():
                    times[kind].append(ms(forward, threads, blobs))
            med = {kind: statistics.median(values) for kind, values in times.items()}
            print(f"| {name} | {med['module2']:.1f} | {med['graph2']:.1f} | {med['module1']:.1f}"
                  f" | {med['graph2on1']:.1f} | {again:.1f} |", flush=True)


if __name__ == "__main__":
    main()
