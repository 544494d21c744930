"""The one timing helper the benchmarks share."""
from __future__ import annotations

import statistics
import time


def timed(fn, repeat: int, warm: bool = True) -> tuple[float, float]:
    """(best, median) milliseconds over `repeat` calls, after one warm-up call if `warm`."""
    if warm:
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000, statistics.median(times) * 1000
