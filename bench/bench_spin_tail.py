"""What a GOMP_SPINCOUNT costs the rest of the machine: the CPU time torch's OpenMP workers
burn after a parallel op has returned, spinning at the barrier before they sleep, measured as
the process's CPU time while its caller sleeps for 50 ms. Each count in its own process
(libgomp reads the setting when torch loads).

Run: python bench/bench_spin_tail.py [--counts 0,1000,...]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

PROBES = 20


def tail_ms() -> list:
    """In a process of one spin count: CPU ms burnt in 50 ms of sleep after each of a few
    2-thread convolutions."""
    import netdef  # noqa: F401  (sets netdef's default when no count is given)
    import torch

    torch.set_num_threads(2)
    x, conv = torch.randn(1, 64, 56, 56), torch.nn.Conv2d(64, 64, 3, padding=1)
    tails = []
    with torch.no_grad():
        for _ in range(5):
            conv(x)
        for _ in range(PROBES):
            conv(x)
            before = time.process_time()
            time.sleep(0.05)
            tails.append((time.process_time() - before) * 1000)
    return sorted(tails)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default="0,1000,10000,30000,100000,300000")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print(" ".join(f"{t:.3f}" for t in tail_ms()))
        return
    print(f"# {os.cpu_count()} cores; CPU ms burnt in 50 ms of sleep after a 2-thread "
          f"convolution, {PROBES} probes per count")
    print("| GOMP_SPINCOUNT | median ms | min ms | max ms |\n|---|---|---|---|")
    for count in args.counts.split(","):
        env = dict(os.environ, GOMP_SPINCOUNT=count)
        out = subprocess.run([sys.executable, __file__, "--probe"], env=env, check=True,
                             capture_output=True, text=True).stdout.split()
        tails = [float(t) for t in out]
        print(f"| {count} | {tails[len(tails) // 2]:.2f} | {tails[0]:.2f} | {tails[-1]:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
