"""CPU forwards choose their thread count by how fast recent forwards ran (runtime/threads.py):
the caller's count while forwards run near their best, one thread when that has been faster
on a slowed-down machine, and the caller's count back after every forward."""
from __future__ import annotations

import pytest
import torch

import netdef
from netdef.runtime import threads
from netdef.runtime.threads import ThreadChooser

from .test_fast import NET


class Clock:
    """time.perf_counter for the chooser: each forward lasts what the test says."""

    def __init__(self, monkeypatch):
        self.now, self.durations = 0.0, {}
        monkeypatch.setattr(threads.time, "perf_counter", lambda: self.now)

    def forward(self, choose, key="x"):
        """One forward under the chooser; returns the thread count it ran with."""
        with choose(key):
            used = torch.get_num_threads()
            self.now += self.durations[used]
        return used


def test_a_quiet_machine_keeps_the_callers_count(two_threads, monkeypatch):
    clock, choose = Clock(monkeypatch), ThreadChooser()
    clock.durations = {2: 1.0, 1: 1.8}
    assert [clock.forward(choose) for _ in range(30)] == [2] * 30


def test_a_collapsed_count_gives_way_to_one_thread_and_comes_back(two_threads, monkeypatch):
    clock, choose = Clock(monkeypatch), ThreadChooser()
    clock.durations = {2: 1.0, 1: 1.8}
    for _ in range(3):
        clock.forward(choose)
    clock.durations = {2: 8.0, 1: 3.0}  # two threads keep waiting for each other
    used = [clock.forward(choose) for _ in range(30)]
    assert used[:3] == [2, 2, 1]  # two slow forwards, then one thread is timed
    assert used[3:].count(1) > 20 and 2 in used[3:]  # two threads are retried now and then
    assert torch.get_num_threads() == 2
    clock.durations = {2: 1.0, 1: 1.8}  # quiet again
    used = [clock.forward(choose) for _ in range(60)]
    assert used[-10:] == [2] * 10


def test_one_slow_forward_alone_changes_nothing(two_threads, monkeypatch):
    clock, choose = Clock(monkeypatch), ThreadChooser()
    clock.durations = {2: 1.0, 1: 1.8}
    used = [clock.forward(choose) for _ in range(3)]
    clock.durations[2] = 6.0  # a hiccup
    used.append(clock.forward(choose))
    clock.durations[2] = 1.0
    used += [clock.forward(choose) for _ in range(10)]
    assert used == [2] * 14


def test_a_busy_machine_where_two_threads_still_win_keeps_them(two_threads, monkeypatch):
    clock, choose = Clock(monkeypatch), ThreadChooser()
    clock.durations = {2: 1.0, 1: 1.8}
    clock.forward(choose)
    clock.durations = {2: 2.5, 1: 4.0}  # slowed down, but one thread is slower still
    used = [clock.forward(choose) for _ in range(40)]
    assert used.count(2) > 30 and 1 in used  # one thread tried now and then, not kept


def test_a_count_that_collapses_every_other_forward_is_judged_by_its_mean(two_threads,
                                                                         monkeypatch):
    clock, choose = Clock(monkeypatch), ThreadChooser()
    clock.durations = {2: 1.0, 1: 1.8}
    clock.forward(choose)
    times = iter([2.5, 9.0] * 40)  # two threads: fast-ish, then stalled, in turn
    clock.durations = {1: 3.0}

    class Alternating(dict):
        def __getitem__(self, threads):
            return next(times) if threads == 2 else super().__getitem__(threads)
    clock.durations = Alternating(clock.durations)
    used = [clock.forward(choose) for _ in range(40)]
    # the better of its last two (2.5) would keep two threads; their mean (5.75) loses to 3.0
    assert used[2] == 1 and used[3:].count(1) > 25


def test_each_input_size_has_its_own_record(two_threads, monkeypatch):
    clock, choose = Clock(monkeypatch), ThreadChooser()
    clock.durations = {2: 1.0, 1: 1.8}
    clock.forward(choose, key="small")
    clock.durations = {2: 10.0, 1: 18.0}  # a bigger input: slower, not a busier machine
    assert [clock.forward(choose, key="big") for _ in range(10)] == [2] * 10


def test_loaded_modules_choose_and_the_caller_keeps_its_count(two_threads, monkeypatch):
    module = netdef.load(NET)
    assert isinstance(module.caffe_thread_chooser, ThreadChooser)
    seen = []
    first = next(node.target for node in module.graph.nodes if node.op == "call_module")
    module.get_submodule(first).register_forward_pre_hook(
        lambda *_: seen.append(torch.get_num_threads()))
    monkeypatch.setattr(threads._State, "choose", lambda self, requested: 1)
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        one = module(data=x)["prob"]
        module.caffe_thread_chooser = None
        two = module(data=x)["prob"]
    assert seen == [1, 2] and torch.get_num_threads() == 2
    torch.testing.assert_close(one, two)


def test_the_count_comes_back_when_the_forward_fails(two_threads, monkeypatch):
    monkeypatch.setattr(threads._State, "choose", lambda self, requested: 1)
    module = netdef.load(NET)
    with pytest.raises(Exception), torch.no_grad():
        module(data=torch.randn(2, 5, 20, 20))  # the wrong number of channels
    assert torch.get_num_threads() == 2


def test_training_and_traced_forwards_are_left_alone(two_threads, monkeypatch):
    monkeypatch.setattr(threads._State, "choose", lambda self, requested: 1)
    module = netdef.load(NET)
    module.train()
    seen = []
    first = next(node.target for node in module.graph.nodes if node.op == "call_module")
    module.get_submodule(first).register_forward_pre_hook(
        lambda *_: seen.append(torch.get_num_threads()))
    module(data=torch.randn(2, 3, 20, 20))
    module.eval()
    with torch.no_grad():
        module(data=torch.randn(2, 3, 20, 20, device="meta"))
    assert seen == [2, 2]


def test_records_stay_bounded_when_every_input_has_its_own_shape(two_threads, monkeypatch):
    clock, choose = Clock(monkeypatch), ThreadChooser()
    monkeypatch.setattr(ThreadChooser, "MAX_SHAPES", 3)
    clock.durations = {2: 1.0, 1: 1.8}
    for size in range(10):
        clock.forward(choose, key=size)
    assert len(choose.states) == 3
    assert (9, 2) in choose.states and (0, 2) not in choose.states  # the oldest went


def test_fast_cpu_forwards_choose_too(two_threads, monkeypatch):
    """netdef.fast on the CPU runs under a chooser of its own (the traced module's chooser
    never runs inside the compiled graph). One thread runs the module as loaded: the graph's
    weights are packed for the caller's count."""
    monkeypatch.setattr(threads._State, "choose", lambda self, requested: 1)
    fast = netdef.fast(netdef.load(NET), engine="inductor")
    seen = []

    def compiled(**blobs):  # stands in for torch.compile's module: no compile in this test
        raise AssertionError("the compiled graph ran on one thread")

    def module(**blobs):
        seen.append(torch.get_num_threads())
        return {"prob": blobs["data"]}
    fast.compiled, fast.module = compiled, module
    fast(data=torch.randn(2, 3, 20, 20))
    assert seen == [1] and torch.get_num_threads() == 2


@pytest.mark.slow
def test_package_kernels_follow_the_chosen_count(two_threads, monkeypatch, tmp_path):
    """An AOTInductor package's generated kernels ask OpenMP for the thread count at each
    call (no count baked in), and its runner chooses like a loaded module."""
    import zipfile

    from netdef.compiler.codegen import export_program
    from netdef.fastpath import load_package

    module = netdef.load(NET, optimize=True)
    torch.set_num_threads(1)  # not the machine's core count: inductor would bake this one in
    export_program(module, {"data": (2, 3, 20, 20)}, tmp_path, "aoti")
    torch.set_num_threads(2)
    with zipfile.ZipFile(tmp_path / "model_aoti.pt2") as package:
        kernels = "".join(package.read(name).decode() for name in package.namelist()
                          if name.endswith("kernel.cpp"))
    assert "#pragma omp parallel" in kernels and "omp parallel num_threads" not in kernels
    run = load_package(tmp_path / "model_aoti.pt2")
    x = torch.randn(3, 3, 20, 20)
    with torch.no_grad():
        expected = module(data=x)["prob"]
    counts = []
    monkeypatch.setattr(threads._State, "choose",
                        lambda self, requested: counts.append(requested) or 1)
    torch.testing.assert_close(run(data=x)["prob"], expected, rtol=1e-5, atol=1e-6)
    assert counts == [2] and torch.get_num_threads() == 2
