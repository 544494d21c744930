"""Load an AOTInductor package in a process of its own, run it, and time it: bench_cuda.py's
probe, so that a loader that crashes (torch 2.11's CUDA packages did, 2026-12-04) takes only
this process down. Prints one line: the loader, the relative error against the reference,
the median of `rounds` CUDA-event timings.

Run: python bench/aoti_probe.py PACKAGE FEEDS.pt REFERENCE.pt BLOB {netdef,torch} [ROUNDS]
"""
from __future__ import annotations

import statistics
import sys

import torch


def main() -> None:
    package, feeds, reference, blob, loader = sys.argv[1:6]
    rounds = int(sys.argv[6]) if len(sys.argv) > 6 else 30
    torch.zeros(1, device="cuda")  # the CUDA context first, as a program using the GPU has it
    feeds = torch.load(feeds, weights_only=True)
    reference = torch.load(reference, weights_only=True)
    if loader == "torch":
        run = torch._inductor.aoti_load_package(package)
    else:
        from netdef.fastpath import load_package
        run = load_package(package)
    output = run(**feeds)[blob]
    error = float((output.double() - reference).norm() / reference.norm())
    times = []
    for _ in range(rounds + 2):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run(**feeds)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    print(f"loader {loader}: rel. error {error:.1e}, median {statistics.median(times[2:]):.3f} ms")


if __name__ == "__main__":
    main()
