"""Streaming a large caffemodel to safetensors: `netdef convert` on a synthetic file of
--gib GiB (default 3), throughput and peak RSS of the converting process.

Peer in the same run: protobuf's own decoder (NetParameter.FromString), which is what a
converter that parses the message would do, on a 1 GiB prefix-sized file (protobuf refuses
messages over 2 GiB), scaled per GB.
Run: python bench/bench_convert.py [--gib 3]
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from netdef.compiler.weights import write_caffemodel

CHILD_CONVERT = """
import resource, sys, time
from netdef.cli import main
start = time.perf_counter()
assert main(["convert", sys.argv[1], "-o", sys.argv[2]]) == 0
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""
CHILD_PROTOBUF = """
import resource, sys, time
from netdef.proto import netdef_pb2 as pb
start = time.perf_counter()
data = open(sys.argv[1], "rb").read()
net = pb.NetParameter.FromString(data)
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def synthetic(path: Path, gib: float) -> int:
    blob = np.random.default_rng(0).standard_normal((4096, 4096), dtype=np.float32)  # 64 MiB
    count = max(1, round(gib * (1 << 30) / blob.nbytes))
    with open(path, "wb") as handle:
        write_caffemodel(handle, ((f"fc{i}", "InnerProduct", [blob]) for i in range(count)))
    return path.stat().st_size


def child(code: str, *args) -> tuple[float, int]:
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[-2]), int(out[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        big, small = Path(tmp) / "big.caffemodel", Path(tmp) / "small.caffemodel"
        size = synthetic(big, args.gib)
        small_size = synthetic(small, 1.0)
        start = time.perf_counter()
        subprocess.run(["cp", str(big), str(Path(tmp) / "copy.bin")], check=True)
        copy_seconds = time.perf_counter() - start
        os.remove(Path(tmp) / "copy.bin")
        seconds, rss = child(CHILD_CONVERT, big, Path(tmp) / "big.safetensors")
        small_seconds, small_rss = child(CHILD_CONVERT, small, Path(tmp) / "small.safetensors")
        peer_seconds, peer_rss = child(CHILD_PROTOBUF, small)
        print(f"machine: {platform.machine()}, Python {sys.version.split()[0]}, "
              f"{time.strftime('%Y-%m-%d')}")
        print("| file | netdef convert | GB/s | peak RSS / file | protobuf FromString | GB/s | "
              "peak RSS / file | ratio (time) |")
        print("|---|---|---|---|---|---|---|---|")
        print(f"| {size / 1e9:.2f} GB | {seconds:.2f} s | {size / 1e9 / seconds:.2f} | "
              f"{rss / size:.2f} | (over protobuf's 2 GiB limit) | - | - | - |")
        print(f"\nfloor: `cp` of the {size / 1e9:.2f} GB file took {copy_seconds:.2f} s "
              f"({size / 1e9 / copy_seconds:.2f} GB/s); netdef convert / cp = "
              f"{seconds / copy_seconds:.2f}x")
        print(f"| {small_size / 1e9:.2f} GB | {small_seconds:.2f} s | "
              f"{small_size / 1e9 / small_seconds:.2f} | {small_rss / small_size:.2f} | "
              f"{peer_seconds:.2f} s | {small_size / 1e9 / peer_seconds:.2f} | "
              f"{peer_rss / small_size:.2f} | {small_seconds / peer_seconds:.2f}x |")


if __name__ == "__main__":
    main()
