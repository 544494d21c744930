"""Thread counts for CPU forwards on a machine that other processes share.

torch's OpenMP regions split each op evenly between their threads. When other processes hold
the cores, a forward at 2 threads is usually still the fastest choice, but now and then the
scheduler keeps parking one thread and every op waits for it: the forward then takes 5-10x its
quiet time (bench/bench_threads.py; docs/benchmarks.md, "Busy machines"). When two forwards in
a row run far slower than the best, the chooser times the two other ways to run, and keeps the
fastest while retrying the others now and then:
- one thread;
- "shared": one OpenMP thread for the caller and for each helper thread here, and the big
  convolutions cut into chunks that whichever thread is free takes (SharedConv2d in
  runtime/linear.py). A parked thread then holds one chunk, not half of every op.
A quiet machine never triggers any of it, and a single hiccup does not either.
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
import time

import torch

SLOW = 2.0  # a mode whose last two forwards both took this many times the best looks elsewhere
SHARED = "shared"
RETRY_LOSER = {True: 4, False: 8}  # forwards between tries of a mode not in use: sooner when
# the caller's count is the one waiting (the others are fallbacks), later for the fallbacks

_local = threading.local()


def helpers() -> Helpers | None:
    """The helper threads sharing this thread's current forward, if it shares its work."""
    return getattr(_local, "helpers", None)


class ThreadChooser:
    """Per module and input shapes: the caller's thread count, or one thread, or shared work,
    whichever has been the fastest lately."""

    def __init__(self, fallbacks=(1, SHARED)):
        self.fallbacks = fallbacks  # the modes tried when the caller's count runs slow
        self.states = {}

    MAX_SHAPES = 256  # a net fed images of every size forgets the oldest records first

    @contextlib.contextmanager
    def __call__(self, key):
        requested = torch.get_num_threads()
        if (key, requested) not in self.states and len(self.states) >= self.MAX_SHAPES:
            del self.states[next(iter(self.states))]
        state = self.states.setdefault((key, requested), _State())
        mode = state.choose(requested, self.fallbacks)
        start = time.perf_counter()
        with running(mode, requested):
            yield
        state.record(mode, requested, time.perf_counter() - start)


@contextlib.contextmanager
def running(mode, requested: int):
    """The block run in `mode`: the caller's count `requested`, 1, or SHARED."""
    threads = requested if mode == requested else 1
    if threads != requested:
        torch.set_num_threads(threads)
    if mode == SHARED:
        _local.helpers = Helpers.of(requested - 1)
    try:
        yield
    finally:
        _local.helpers = None
        if threads != requested:
            torch.set_num_threads(requested)


class _State:
    def __init__(self):
        self.best = math.inf  # the fastest forward at the caller's count
        self.last = {}  # mode -> its last two forward times
        self.since = {}  # mode -> forwards since it last ran
        self.slowed = False  # the caller's count has run slow: the others are in play

    def choose(self, requested: int, fallbacks: tuple):
        if requested == 1:
            return requested
        recent = self.last.get(requested, [])
        # both of the last two slow puts the others in play (one slow forward is a hiccup);
        # both near the best again takes them out
        if len(recent) == 2 and all(t > SLOW * self.best for t in recent):
            self.slowed = True
        elif len(recent) == 2 and all(t <= SLOW * self.best for t in recent):
            self.slowed = False
        if not self.slowed:
            return requested
        untried = [mode for mode in fallbacks if mode not in self.last]
        if untried:
            return untried[0]
        # on a busy machine one mode's times jump between fast and collapsed: the mean of its
        # last two, not the better one, says what it costs
        times = {mode: sum(self.last[mode]) / len(self.last[mode])
                 for mode in (requested, *fallbacks)}
        winner = min(times, key=times.get)
        due = [mode for mode in times if mode != winner
               and self.since.get(mode, 0) >= RETRY_LOSER[mode == requested]]
        return due[0] if due else winner

    def record(self, mode, requested: int, elapsed: float) -> None:
        self.last[mode] = (self.last.get(mode, []) + [elapsed])[-2:]
        if mode == requested:
            self.best = min(self.best, elapsed)
        for other in self.since:
            self.since[other] += 1
        self.since[mode] = 0


class Helpers:
    """Threads that share an op's chunks with the thread that calls map(): each thread takes
    the next chunk when it is free, so one the scheduler has parked delays only the chunk it
    holds. Started on first use, one set per count for the process; they run one OpenMP thread
    each and keep no gradients (ops are shared only when the caller keeps none)."""

    _sets: dict[int, Helpers] = {}
    _sets_lock = threading.Lock()

    @classmethod
    def of(cls, count: int) -> Helpers:
        with cls._sets_lock:
            if count not in cls._sets:
                cls._sets[count] = cls(count)
            return cls._sets[count]

    def __init__(self, count: int):
        self.count = count
        self.busy = threading.Lock()  # one op at a time; a second caller does its chunks alone
        self.wake = threading.Condition()
        self.job, self.jobs = None, 0
        started = threading.Barrier(count + 1)
        for _ in range(count):
            threading.Thread(target=self._serve, args=(started,), name="netdef-helper",
                             daemon=True).start()
        started.wait()  # their set_num_threads(1) also sets torch's default for new threads:
        # done while the caller runs at one thread, before it restores its own count

    def map(self, work, chunks: int) -> list:
        """[work(0), ..., work(chunks - 1)], the chunks taken by the caller and the helpers."""
        job = _Job(work, chunks)
        if not self.busy.acquire(blocking=False):
            job.run()
            return job.results()
        try:
            with self.wake:
                self.job, self.jobs = job, self.jobs + 1
                self.wake.notify_all()
            job.run()
            return job.results()
        finally:
            self.busy.release()

    def _serve(self, started: threading.Barrier) -> None:
        torch.set_num_threads(1)
        torch.set_grad_enabled(False)
        started.wait()
        seen = 0
        while True:
            with self.wake:
                self.wake.wait_for(lambda: self.jobs != seen)
                seen, job = self.jobs, self.job
            job.run()  # a job already finished by the others has no chunk left: a no-op


def _forget_helpers() -> None:  # a forked child has none of its parent's threads, nor its locks
    Helpers._sets, Helpers._sets_lock = {}, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)


class _Job:
    def __init__(self, work, chunks: int):
        self.work, self.chunks = work, chunks
        self.taken = 0
        self.values = [None] * chunks
        self.errors = []
        self.done = 0
        self.finished = threading.Condition()

    def run(self) -> None:
        while (index := self._take()) is not None:
            try:
                self.values[index] = self.work(index)
            except BaseException as error:  # re-raised in the caller by results()
                self.errors.append(error)
            with self.finished:
                self.done += 1
                self.finished.notify_all()

    def _take(self) -> int | None:
        with self.finished:
            if self.taken == self.chunks:
                return None
            self.taken += 1
            return self.taken - 1

    def results(self) -> list:
        """The values, once every chunk a helper took is done."""
        with self.finished:
            self.finished.wait_for(lambda: self.done == self.chunks)
        if self.errors:
            raise self.errors[0]
        return self.values
