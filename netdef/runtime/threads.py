"""Thread counts for CPU forwards on a machine that other processes share.

torch's OpenMP regions split each op evenly between their threads. When other processes hold
the cores, a forward at 2 threads is usually still the fastest choice, but now and then the
scheduler keeps parking one thread and every op waits for it: the forward then takes 5-10x its
quiet time, where one thread would take about 3x (bench/bench_threads.py; docs/benchmarks.md,
"Busy machines"). Forwards that run far slower than their best are therefore timed against one
thread, and the faster count is kept until the times say otherwise. A quiet machine never
triggers it, so it costs nothing there.
"""
from __future__ import annotations

import contextlib
import math
import time

import torch

SLOW = 2.0  # a forward this many times slower than the best seen looks for a better count
RETRY = 8  # forwards between tries of the count not in use, while slow
WEIGHT = 0.5  # of the newest time in each count's running average


class ThreadChooser:
    """Per module and input shapes: the caller's thread count, or one thread while that has
    been the faster lately."""

    def __init__(self):
        self.states = {}

    @contextlib.contextmanager
    def __call__(self, key):
        requested = torch.get_num_threads()
        state = self.states.setdefault((key, requested), _State())
        threads = state.choose(requested)
        if threads != requested:
            torch.set_num_threads(threads)
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            if threads != requested:
                torch.set_num_threads(requested)
        state.record(threads, requested, elapsed)


class _State:
    def __init__(self):
        self.best = math.inf  # the fastest forward at the caller's count
        self.average = {}  # threads -> running average of recent forwards
        self.since = {}  # threads -> forwards since it last ran

    def choose(self, requested: int) -> int:
        usual = self.average.get(requested)
        if requested == 1 or usual is None or usual <= SLOW * self.best:
            return requested
        single = self.average.get(1)
        if single is None or self.since.get(1, 0) >= RETRY:
            return 1  # slow at the caller's count: time one thread
        if single < usual:
            return requested if self.since.get(requested, 0) >= RETRY else 1
        return requested

    def record(self, threads: int, requested: int, elapsed: float) -> None:
        previous = self.average.get(threads)
        self.average[threads] = elapsed if previous is None else \
            WEIGHT * elapsed + (1 - WEIGHT) * previous
        if threads == requested:
            self.best = min(self.best, elapsed)
        for count in self.since:
            self.since[count] += 1
        self.since[threads] = 0
        self.since.setdefault(1 if threads != 1 else requested, 0)
