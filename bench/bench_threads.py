"""Busy machines: thread policies for CPU forwards, quiet and busy, against OpenCV 4.12's Caffe
importer. "chooser": netdef's default (netdef/runtime/threads.py: forwards far slower than
their best are timed against one thread, and the count with the faster recent mean is kept).
"fixed": torch's 2 threads always. "free": a policy tried on 2026-12-04 and left out of netdef,
kept here to be measured again: each forward takes the cores other processes leave free (read
from /proc at most every 0.2 s), so one thread on a busy 2-core machine. "one" and "four": one
and four threads always (four oversubscribes a 2-core machine). "quick": the chooser with one
more trigger, tried on 2026-12-05 and left out: a single forward over 3x the best. Five more
rules for the chooser, tried on 2026-12-06 and left out (docs/benchmarks.md, "the chooser's
rule"): "steady" (means of the last four forwards), "sticky" (one thread for as long as the
caller's count runs slow), "patient" (fewer tries of the caller's count), "margin" (and it must
be clearly faster to win back), "strict-exit" (one thread leaves play only near the best).
optimize=True modules, interleaved in one process, one forward of each per round; "busy" is
the same rounds while two processes spin on the same cores. Prints each one's slowdown (busy
median over quiet median) per net and the geometric means. `--trace NET` instead prints every
busy round of one net: each policy's time and the thread count the chooser used ("one": one
thread always).

Run: python bench/bench_threads.py [--nets NAME,...] [--rounds N] [--repeats N] [--kinds K,...]
     python bench/bench_threads.py --trace NET [--rounds N]
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import netdef  # first: netdef sets its OpenMP default before torch loads  # isort: skip
import torch

from netdef.runtime.threads import SLOW, ThreadChooser, _State

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_zoo import (busy, busy_medians, cpu_kind, geomean, medians, round_order,  # noqa: E402
                       runners, zoo)

KINDS = ("chooser", "fixed", "free", "opencv")  # and "one", "four", "quick", "steady",
# "sticky", "patient", "margin", "strict-exit", "pinned", "short-slices" when asked for
SMALL_OPS = "nsfw,ResNet-50,GoogLeNet,MobileNet,SqueezeNet,DenseNet-121"

CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def free_cores():  # the policy tried as netdef's default on 2026-12-04, then taken out
    """torch's thread count lowered to the free cores (at least one) for the block, then the
    caller's again."""
    requested = torch.get_num_threads()
    threads = max(1, min(requested, CPUS - _recent_others()))
    if threads == requested:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(requested)


# /proc is read at most this often: reading it costs a forward about 0.4 ms on a 2-core VM
# (more than the 70 us the reads take: they wake kernel threads that then share the cores),
# and a machine's load changes on a longer scale
SAMPLE_SECONDS = 0.2
_sample = {"at": -SAMPLE_SECONDS, "others": 0}


def _recent_others() -> int:
    now = time.monotonic()
    if now - _sample["at"] >= SAMPLE_SECONDS:
        _sample.update(at=now, others=running_elsewhere())
    return _sample["others"]


def running_elsewhere() -> int:
    """Threads on the machine that are running or ready to run, this process's own not counted
    (its OpenMP workers may still be spinning after the last op); 0 where /proc cannot say."""
    # this process's threads first: one that stops spinning between the two reads then makes
    # the count too low (harmless), never too high
    own = _own_running()
    try:
        with open("/proc/stat", "rb") as stat:
            running = next(int(line.split()[1]) for line in stat
                           if line.startswith(b"procs_running"))
    except (OSError, StopIteration, ValueError):
        return 0
    return max(0, running - own)


def _own_running() -> int:
    count = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/stat", "rb") as stat:
                text = stat.read()
        except OSError:  # the thread ended meanwhile
            continue
        state = text[text.rindex(b")") + 2:text.rindex(b")") + 3]  # after "(name) "
        count += state == b"R"
    return count


class _SchedAttr(ctypes.Structure):  # Linux's struct sched_attr (sched_setattr(2))
    _fields_ = [("size", ctypes.c_uint32), ("policy", ctypes.c_uint32),
                ("flags", ctypes.c_uint64), ("nice", ctypes.c_int32),
                ("priority", ctypes.c_uint32), ("runtime", ctypes.c_uint64),
                ("deadline", ctypes.c_uint64), ("period", ctypes.c_uint64),
                ("util_min", ctypes.c_uint32), ("util_max", ctypes.c_uint32)]


SCHED_SETATTR, SCHED_GETATTR, GETTID = 314, 315, 186  # x86_64 system call numbers
_libc = ctypes.CDLL(None, use_errno=True)


def _set_slice(thread: int, nanoseconds: int) -> None:
    """The thread's requested slice (Linux 6.12+ EEVDF; 0 gives the default back)."""
    attr = _SchedAttr()
    if _libc.syscall(SCHED_GETATTR, thread, ctypes.byref(attr), ctypes.sizeof(attr), 0):
        raise OSError(ctypes.get_errno(), "sched_getattr")
    attr.size, attr.flags, attr.runtime = ctypes.sizeof(attr), 0, nanoseconds
    if _libc.syscall(SCHED_SETATTR, thread, ctypes.byref(attr), 0):
        raise OSError(ctypes.get_errno(), "sched_setattr")


def with_short_slices(forward, nanoseconds=100_000):
    """"short-slices": a short slice makes the scheduler run a woken thread sooner, so a thread
    that a barrier waits on might lose less time behind the spinners."""
    def run():
        threads = [int(task) for task in os.listdir("/proc/self/task")]
        for thread in threads:
            _set_slice(thread, nanoseconds)
        try:
            forward()
        finally:
            for thread in threads:
                _set_slice(thread, 0)
    return run


def openmp_threads() -> set:
    """The thread ids of torch's OpenMP team: each member of a region run through libgomp's
    own entry point reports its id (torch's wheel ships libgomp)."""
    path = next(line.split()[-1] for line in open("/proc/self/maps") if "libgomp" in line)
    gomp, found = ctypes.CDLL(path), set()
    callback = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _: found.add(_libc.syscall(GETTID)))
    gomp.GOMP_parallel(callback, None, ctypes.c_uint(torch.get_num_threads()), ctypes.c_uint(0))
    return found


def pinned(forward):
    """"pinned": torch's OpenMP threads held on the calling thread's core for each forward, so
    they never wait on a partner parked on the other core; the balancer may move the spinners
    away."""
    team, everywhere = openmp_threads(), os.sched_getaffinity(0)

    def run():
        core = {_libc.sched_getcpu()}
        for thread in team:
            os.sched_setaffinity(thread, core)
        try:
            forward()
        finally:
            for thread in team:
                os.sched_setaffinity(thread, everywhere)
    return run


def with_free_cores(forward):
    def run():
        with free_cores():
            forward()
    return run


class _QuickState(_State):
    """"quick": the chooser, but one forward over 3x the best puts one thread in play."""

    def _update_slowed(self, recent: list) -> None:
        super()._update_slowed(recent)
        if recent and recent[-1] > 3 * self.best:
            self.slowed = True


class _SteadyState(_State):
    """"steady": the chooser judging each count by the mean of its last four forwards, not two,
    and trying the count not in use every 8 forwards either way: on a busy machine one count's
    times jump between about 1x and 2x (which thread shares a core with a spinner), and two
    samples flip the choice often."""

    WINDOW, RETRY = 4, 8

    def __init__(self):
        super().__init__()
        self.history = {}  # threads -> its last WINDOW forward times

    def _compare(self, requested: int) -> int:
        mean = {count: statistics.mean(self.history[count]) for count in (requested, 1)}
        winner = min(mean, key=mean.get)
        loser = requested if winner == 1 else 1
        return loser if self.since.get(loser, 0) >= self.RETRY else winner

    def record(self, threads: int, requested: int, elapsed: float) -> None:
        super().record(threads, requested, elapsed)
        self.history[threads] = (self.history.get(threads, []) + [elapsed])[-self.WINDOW:]


class _StickyState(_State):
    """"sticky": once the caller's count has run slow, one thread, with the caller's count
    tried every 8 forwards and taken back only when two of its forwards in a row run near its
    best again (no comparison of means: on a busy machine two threads' forwards collapse now
    and then, one thread's at worst share a core)."""

    RETRY = 8

    def _compare(self, requested: int) -> int:
        return requested if self.since.get(requested, 0) >= self.RETRY else 1


class _MarginState(_State):
    """"margin": tried on 2026-12-06 and left out. The chooser, but the count not in use is
    tried every 8 forwards either way (netdef: the caller's count after 4), and once one thread
    has won, the caller's count must be 20% faster (mean of its last two forwards) to win back.
    Under load one thread's forwards take 1x or 2x its quiet time (a core to itself, or one
    shared with a spinner), and lucky pairs at two threads flip the choice."""

    RETRY, MARGIN = 8, 0.8

    def __init__(self):
        super().__init__()
        self.one_thread_won = True

    def _compare(self, requested: int) -> int:
        mean = {count: sum(self.last[count]) / len(self.last[count]) for count in (requested, 1)}
        needed = self.MARGIN if self.one_thread_won else 1.0
        self.one_thread_won = not mean[requested] < needed * mean[1]
        winner, loser = (1, requested) if self.one_thread_won else (requested, 1)
        return loser if self.since.get(loser, 0) >= self.RETRY else winner


class _PatientState(_MarginState):
    """"patient": "margin" without its margin (the caller's count retried every 8 forwards)."""

    MARGIN = 1.0


class _StrictExitState(_State):
    """"strict-exit": the chooser, but one thread leaves play only when two forwards in a row
    at the caller's count run within 1.3x its best (netdef: 2x, the same bound that puts one
    thread in play). Under load, 2-thread forwards often land just under 2x the best, and
    each false all-clear cost two more collapsed forwards before one thread came back."""

    QUIET = 1.3

    def _update_slowed(self, recent: list) -> None:
        if len(recent) == 2 and all(t > SLOW * self.best for t in recent):
            self.slowed = True
        elif len(recent) == 2 and all(t <= self.QUIET * self.best for t in recent):
            self.slowed = False


RULES = {"quick": _QuickState, "steady": _SteadyState, "sticky": _StickyState,
         "patient": _PatientState, "margin": _MarginState, "strict-exit": _StrictExitState}


def slowdowns(prototxt, weights, shape, rounds: int, kinds) -> dict:
    """kind -> (quiet ms, busy ms) for each of `kinds`: policies and OpenCV."""
    fixed = netdef.load(prototxt, weights, optimize=True)
    fixed.caffe_thread_chooser = None  # always the caller's 2 threads
    modules = {"fixed": fixed, "chooser": netdef.load(prototxt, weights, optimize=True)}
    for kind, rule in RULES.items():
        if kind in kinds:
            modules[kind] = netdef.load(prototxt, weights, optimize=True)
            modules[kind].caffe_thread_chooser = ThreadChooser(state=rule)
    runs = runners(prototxt, weights, shape, **modules)
    runs["free"] = with_free_cores(runs["fixed"])
    runs["one"], runs["four"] = on_threads(1, runs["fixed"]), on_threads(4, runs["fixed"])
    runs["short-slices"] = with_short_slices(runs["fixed"])
    if "pinned" in kinds:
        runs["pinned"] = pinned(runs["fixed"])
    runs = {kind: runs[kind] for kind in kinds}
    quiet = medians(runs, rounds)
    busy = busy_medians(runs, rounds)
    return {kind: (quiet[kind], busy[kind]) for kind in runs}


def on_threads(count: int, forward):
    def run():
        requested = torch.get_num_threads()
        torch.set_num_threads(count)
        try:
            forward()
        finally:
            torch.set_num_threads(requested)
    return run


def trace(prototxt, weights, shape, rounds: int) -> None:
    """Quiet rounds, then busy rounds printed one by one with the chooser's thread count."""
    chooser = netdef.load(prototxt, weights, optimize=True)
    fixed = netdef.load(prototxt, weights, optimize=True)
    one = netdef.load(prototxt, weights, optimize=True)
    fixed.caffe_thread_chooser = one.caffe_thread_chooser = None
    runs = runners(prototxt, weights, shape, chooser=chooser, fixed=fixed, one=one)
    runs["one"] = on_threads(1, runs["one"])
    quiet = medians(runs, rounds)
    print("quiet medians ms: " + ", ".join(f"{k} {v:.1f}" for k, v in quiet.items()))
    with busy():
        print("| busy round | chooser's threads | " + " | ".join(f"{k} ms" for k in runs) + " |")
        print("|---" * (2 + len(runs)) + "|")
        for number in range(1, rounds + 1):
            row = dict.fromkeys(runs, 0.0)  # printed in the kinds' order, run in the round's
            for kind in round_order(list(runs), number - 1):
                start = time.perf_counter()
                runs[kind]()
                row[kind] = (time.perf_counter() - start) * 1000
            state = next(iter(chooser.caffe_thread_chooser.states.values()))
            used = min(state.since, key=state.since.get)  # the count that ran last
            print(f"| {number} | {used} | " + " | ".join(f"{v:.1f}" for v in row.values())
                  + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nets", default=SMALL_OPS)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--trace", metavar="NET", help="one net's busy rounds, one by one")
    args = parser.parse_args()
    import cv2

    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    print(f"# {cpu_kind()}, torch {torch.__version__}, OpenCV {cv2.__version__}, 2 threads "
          f"each; {args.rounds} quiet and {args.rounds} busy rounds; slowdown = busy / quiet")
    if args.trace:
        with tempfile.TemporaryDirectory() as tmp:
            (files,) = zoo(Path(tmp), [args.trace]).values()
            trace(*files, args.rounds)
        return
    kinds = args.kinds.split(",")
    print("| repeat | net | " + " | ".join(f"{kind} quiet ms | {kind} busy ms" for kind in kinds)
          + " | " + " | ".join(f"slowdown {kind}" for kind in kinds) + " |")
    print("|---" * (2 + 3 * len(kinds)) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        nets = zoo(Path(tmp), args.nets.split(","))
        for repeat in range(1, args.repeats + 1):
            rows = []
            for name, files in nets.items():
                times = slowdowns(*files, args.rounds, kinds)
                row = {kind: busy / quiet for kind, (quiet, busy) in times.items()}
                rows.append(row)
                cells = " | ".join(f"{times[k][0]:.1f} | {times[k][1]:.1f}" for k in kinds)
                print(f"| {repeat} | {name} | {cells} | "
                      + " | ".join(f"{row[k]:.2f}" for k in kinds) + " |", flush=True)
            means = {kind: geomean(row[kind] for row in rows) for kind in kinds}
            print(f"| {repeat} | **geometric mean** |" + " |" * (2 * len(kinds)) + " "
                  + " | ".join(f"**{means[k]:.2f}**" for k in kinds) + " |", flush=True)


if __name__ == "__main__":
    main()
