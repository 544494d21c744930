"""How many threads a CPU forward takes: as many as the caller set, but no more than the cores
that other processes leave free at the moment it starts.

torch's OpenMP regions split each op's work evenly between their threads, so when another
process holds a core, every op waits for the thread the scheduler parked: on a 2-core VM with
two busy processes a 2-thread forward took 3.5-4.5x its quiet time, OpenCV's pool (which hands
out stripes to whichever thread is free) about 3x. One thread never waits for a partner
(docs/benchmarks.md, "Busy machines"). Linux only; elsewhere nothing changes.
"""
from __future__ import annotations

import contextlib
import os

import torch

CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def free_cores():
    """torch's thread count lowered to the free cores (at least one) for the block, then the
    caller's again."""
    requested = torch.get_num_threads()
    threads = max(1, min(requested, CPUS - running_elsewhere()))
    if threads == requested:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(requested)


def running_elsewhere() -> int:
    """Threads on the machine that are running or ready to run, this process's own not counted
    (its OpenMP workers may still be spinning after the last op); 0 where /proc cannot say."""
    try:
        with open("/proc/stat", "rb") as stat:
            running = next(int(line.split()[1]) for line in stat
                           if line.startswith(b"procs_running"))
    except (OSError, StopIteration, ValueError):
        return 0
    return max(0, running - _own_running())


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
