"""Thread counts for CPU forwards on a machine that other processes share.

torch's OpenMP regions split each op evenly between their threads. When other processes hold
the cores, a forward at 2 threads is usually still the fastest choice, but now and then the
scheduler keeps parking one thread and every op waits for it: the forward then takes 5-10x its
quiet time, where one thread would take about 3x (bench/bench_threads.py; docs/benchmarks.md,
"Busy machines"). When two forwards in a row run far slower than the best, one thread is timed,
and the count with the faster mean of its last two forwards is kept, the other retried now and
then, until two forwards at the caller's count run near the best again. A quiet machine never
triggers it, and a single hiccup does not either.
"""
from __future__ import annotations

import contextlib
import math
import time

import torch

SLOW = 2.0  # a count whose last two forwards both took this many times the best looks elsewhere
RETRY_LOSER = {True: 4, False: 8}  # forwards between tries of the count not in use: sooner
# when the caller's count is the one waiting (one thread is a fallback), later for one thread


class ThreadChooser:
    """Per module and input shapes: the caller's thread count, or one thread while that has
    been the faster lately."""

    def __init__(self, state=None):
        self.states = {}
        self.state = state or _State  # what judges the counts (a bench may try another rule)

    MAX_SHAPES = 256  # a net fed images of every size forgets the oldest records first

    @contextlib.contextmanager
    def __call__(self, key):
        requested = torch.get_num_threads()
        if (key, requested) not in self.states and len(self.states) >= self.MAX_SHAPES:
            del self.states[next(iter(self.states))]
        state = self.states.setdefault((key, requested), self.state())
        threads = state.choose(requested)
        if threads != requested:
            torch.set_num_threads(threads)
        start = time.perf_counter()
        try:
            yield threads != requested  # whether one thread stands in for the caller's count
        finally:
            elapsed = time.perf_counter() - start
            if threads != requested:
                torch.set_num_threads(requested)
        state.record(threads, requested, elapsed)

    def inputs(self, blobs: dict):
        """A forward on these inputs under the chooser; plain when they are not CPU tensors."""
        key = cpu_key(blobs)
        return contextlib.nullcontext(False) if key is None else self(key)


def cpu_key(blobs: dict):
    """What a chooser keeps its records under: the input names and shapes, or None when an
    input is not a plain CPU tensor (CUDA, meta, a subclass that traces), left alone."""
    tensors = {name: value for name, value in blobs.items() if isinstance(value, torch.Tensor)}
    if any(type(value) is not torch.Tensor or value.device.type != "cpu"
           for value in tensors.values()):
        return None
    return tuple((name, tuple(value.shape)) for name, value in tensors.items())


def chosen(run, on_one_thread=None):
    """A compiled forward, `run(**blobs)`, behind a chooser of its own: netdef.fast's and an
    AOTInductor package's CPU forwards, whose kernels read the thread count at every call
    (compiled with inductor's cpp.dynamic_threads, see netdef/fastpath.py). While one thread
    stands in for the caller's count, `on_one_thread(**blobs)` runs instead when given."""
    choose = ThreadChooser()

    def forward(**blobs):
        with choose.inputs(blobs) as aside:
            return (on_one_thread if aside and on_one_thread else run)(**blobs)
    return forward


class _State:
    def __init__(self):
        self.best = math.inf  # the fastest forward at the caller's count
        self.last = {}  # threads -> its last two forward times
        self.since = {}  # threads -> forwards since it last ran
        self.slowed = False  # the caller's count has run slow: one thread is in play

    def choose(self, requested: int) -> int:
        if requested == 1:
            return requested
        self._update_slowed(self.last.get(requested, []))
        if not self.slowed:
            return requested
        if 1 not in self.last:
            return 1
        return self._compare(requested)

    def _compare(self, requested: int) -> int:
        """The count to run while one thread is in play, both counts timed (a bench may try
        other rules)."""
        # on a busy machine a count's times jump between fast and collapsed: the mean of its
        # last two, not the better one, says what it costs
        mean = {count: sum(self.last[count]) / len(self.last[count]) for count in (requested, 1)}
        winner = min(mean, key=mean.get)
        loser = requested if winner == 1 else 1
        return loser if self.since.get(loser, 0) >= RETRY_LOSER[loser == requested] else winner

    def _update_slowed(self, recent: list) -> None:
        # both of the last two slow puts one thread in play (one slow forward is a hiccup);
        # both near the best again takes it out
        if len(recent) == 2 and all(t > SLOW * self.best for t in recent):
            self.slowed = True
        elif len(recent) == 2 and all(t <= SLOW * self.best for t in recent):
            self.slowed = False

    def record(self, threads: int, requested: int, elapsed: float) -> None:
        self.last[threads] = (self.last.get(threads, []) + [elapsed])[-2:]
        if threads == requested:
            self.best = min(self.best, elapsed)
        for count in self.since:
            self.since[count] += 1
        self.since[threads] = 0
