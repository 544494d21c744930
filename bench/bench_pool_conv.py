"""Busy machines: a convolution split into chunks that torch's inter-op pool hands to whichever
of its threads is free, tried on 2026-12-06 and left out. The inter-op pool is C++ threads
(torch.jit.fork from a scripted function), so unlike the Python helpers of commit dff009d no
chunk waits for the GIL. Each pool thread runs its chunk at one OpenMP thread. Two ways to cut:
"channels" (output channels, weights cut once beforehand) and "rows" (bands of output rows
read from the padded input, whole weights). Against the whole convolution at torch's 2 threads
and at one, quiet and while two processes spin on the same cores, interleaved in one process.

Run: python bench/bench_pool_conv.py [--chunks N] [--rounds N]
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import List

import netdef  # first: netdef sets its OpenMP default before torch loads  # isort: skip
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_zoo import busy, cpu_kind, medians  # noqa: E402

# (in channels, out channels, kernel, height = width): ResNet-50's, VGG-16's and MobileNet's
# common shapes
LAYERS = [(64, 64, 3, 56), (256, 64, 1, 56), (64, 256, 1, 56), (256, 256, 3, 14),
          (128, 128, 3, 112), (512, 512, 3, 7)]


@torch.jit.script
def by_channels(x: torch.Tensor, weights: List[torch.Tensor], biases: List[torch.Tensor],
                pad: int) -> torch.Tensor:
    futures = [torch.jit._fork(torch.conv2d, x, w, b, [1, 1], [pad, pad])
               for w, b in zip(weights, biases)]
    return torch.cat([torch.jit._wait(future) for future in futures], 1)


@torch.jit.script
def by_rows(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pad: int,
            chunks: int) -> torch.Tensor:
    padded = torch.constant_pad_nd(x, [pad, pad, pad, pad]) if pad > 0 else x
    kernel = weight.shape[2]
    rows = padded.shape[2] - kernel + 1
    step = (rows + chunks - 1) // chunks
    futures = torch.jit.annotate(List[torch.jit.Future[torch.Tensor]], [])
    for first in range(0, rows, step):
        band = padded[:, :, first:min(rows, first + step) + kernel - 1]
        futures.append(torch.jit._fork(torch.conv2d, band, weight, bias))
    return torch.cat([torch.jit._wait(future) for future in futures], 2)


def start_pool_at_one_thread() -> None:
    """Inter-op threads take torch's thread count when they start: start them at one."""
    requested = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.jit._wait(torch.jit._fork(torch.relu, torch.zeros(1)))
    torch.set_num_threads(requested)


def layer_runs(cin: int, cout: int, kernel: int, size: int, chunks: int) -> dict:
    """kind -> a no-argument forward of one layer, each checked against the whole op first."""
    last = torch.channels_last
    x = torch.randn(1, cin, size, size).contiguous(memory_format=last)
    weight = (torch.randn(cout, cin, kernel, kernel) / (cin * kernel) ** 0.5).contiguous(
        memory_format=last)
    bias, pad = torch.randn(cout), kernel // 2
    weights = [part.contiguous(memory_format=last) for part in weight.chunk(chunks)]
    biases = [part.contiguous() for part in bias.chunk(chunks)]

    def two():
        return F.conv2d(x, weight, bias, 1, pad)

    def one():
        torch.set_num_threads(1)
        try:
            return two()
        finally:
            torch.set_num_threads(2)
    runs = {"two": two, "one": one,
            "channels": lambda: by_channels(x, weights, biases, pad),
            "rows": lambda: by_rows(x, weight, bias, pad, chunks)}
    for kind in ("channels", "rows"):
        torch.testing.assert_close(runs[kind](), two(), rtol=1e-4, atol=1e-4)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=31)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    start_pool_at_one_thread()
    print(f"# {cpu_kind()}, torch {torch.__version__}; {args.chunks} chunks on torch's "
          f"inter-op pool ({torch.get_num_interop_threads()} threads); median ms of "
          f"{args.rounds} rounds")
    layers = {f"{cin}->{cout} {k}x{k} at {size}x{size}": layer_runs(cin, cout, k, size,
                                                                     args.chunks)
              for cin, cout, k, size in LAYERS}
    kinds = list(next(iter(layers.values())))
    print("| phase | layer | " + " | ".join(kinds) + " |\n" + "|---" * (2 + len(kinds)) + "|")
    with torch.no_grad():
        for phase in ("quiet", "busy", "quiet"):
            with busy() if phase == "busy" else contextlib.nullcontext():
                for name, runs in layers.items():
                    times = medians(runs, args.rounds)
                    print(f"| {phase} | {name} | "
                          + " | ".join(f"{times[kind]:.2f}" for kind in kinds) + " |",
                          flush=True)


if __name__ == "__main__":
    main()
