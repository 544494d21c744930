"""CPU forwards choose how to run by how fast recent forwards ran (runtime/threads.py): the
caller's count while forwards run near their best; on a slowed-down machine one thread, or
shared work (big convolutions cut into chunks that the caller and helper threads take as they
come free), whichever has been faster; and the caller's count back after every forward."""
from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F

import netdef
from netdef.runtime import ConvReLU, SharedConv2d, threads
from netdef.runtime.threads import SHARED, Helpers, ThreadChooser

from .test_fast import NET


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


class Clock:
    """time.perf_counter for the chooser: each forward lasts what the test says."""

    def __init__(self, monkeypatch):
        self.now, self.durations = 0.0, {}
        monkeypatch.setattr(threads.time, "perf_counter", lambda: self.now)

    def forward(self, choose, key="x"):
        """One forward under the chooser; returns the mode it ran in: a thread count, or
        SHARED."""
        with choose(key):
            used = SHARED if threads.helpers() else torch.get_num_threads()
            self.now += self.durations[used]
        return used


QUIET = {2: 1.0, 1: 1.8, SHARED: 2.0}


def test_a_quiet_machine_keeps_the_callers_count(two_threads, monkeypatch):
    clock, choose = Clock(monkeypatch), ThreadChooser()
    clock.durations = QUIET
    assert [clock.forward(choose) for _ in range(30)] == [2] * 30


def test_a_collapsed_count_gives_way_to_one_thread_and_comes_back(two_threads, monkeypatch):
    clock, choose = Clock(monkeypatch), ThreadChooser()
    clock.durations = QUIET
    for _ in range(3):
        clock.forward(choose)
    clock.durations = {2: 8.0, 1: 3.0, SHARED: 4.0}  # two threads keep waiting for each other
    used = [clock.forward(choose) for _ in range(30)]
    assert used[:4] == [2, 2, 1, SHARED]  # two slow forwards, then the others are timed
    assert used[4:].count(1) > 16 and 2 in used[4:] and SHARED in used[4:]  # and retried
    assert torch.get_num_threads() == 2
    clock.durations = QUIET  # quiet again
    used = [clock.forward(choose) for _ in range(60)]
    assert used[-10:] == [2] * 10


def test_shared_work_is_kept_when_it_is_the_fastest(two_threads, monkeypatch):
    clock, choose = Clock(monkeypatch), ThreadChooser()
    clock.durations = QUIET
    clock.forward(choose)
    clock.durations = {2: 6.0, 1: 3.0, SHARED: 2.5}  # a parked thread holds one chunk only
    used = [clock.forward(choose) for _ in range(40)]
    assert used[:4] == [2, 2, 1, SHARED]
    assert used[4:].count(SHARED) > 25 and 1 in used[4:] and 2 in used[4:]
    assert torch.get_num_threads() == 2 and threads.helpers() is None


def test_a_chooser_can_be_kept_from_sharing(two_threads, monkeypatch):
    clock, choose = Clock(monkeypatch), ThreadChooser(fallbacks=(1,))
    clock.durations = QUIET
    clock.forward(choose)
    clock.durations = {2: 6.0, 1: 3.0, SHARED: 1.0}
    used = [clock.forward(choose) for _ in range(30)]
    assert SHARED not in used and used.count(1) > 20


def test_one_slow_forward_alone_changes_nothing(two_threads, monkeypatch):
    clock, choose = Clock(monkeypatch), ThreadChooser()
    clock.durations = dict(QUIET)
    used = [clock.forward(choose) for _ in range(3)]
    clock.durations[2] = 6.0  # a hiccup
    used.append(clock.forward(choose))
    clock.durations[2] = 1.0
    used += [clock.forward(choose) for _ in range(10)]
    assert used == [2] * 14


def test_a_busy_machine_where_two_threads_still_win_keeps_them(two_threads, monkeypatch):
    clock, choose = Clock(monkeypatch), ThreadChooser()
    clock.durations = QUIET
    clock.forward(choose)
    clock.durations = {2: 2.5, 1: 4.0, SHARED: 3.0}  # slowed down, the others slower still
    used = [clock.forward(choose) for _ in range(40)]
    assert used.count(2) > 25 and 1 in used and SHARED in used  # tried now and then, not kept


def test_each_input_size_has_its_own_record(two_threads, monkeypatch):
    clock, choose = Clock(monkeypatch), ThreadChooser()
    clock.durations = QUIET
    clock.forward(choose, key="small")
    clock.durations = {2: 10.0, 1: 18.0, SHARED: 20.0}  # a bigger input: slower, not a busier machine
    assert [clock.forward(choose, key="big") for _ in range(10)] == [2] * 10


def test_loaded_modules_choose_and_the_caller_keeps_its_count(two_threads, monkeypatch):
    module = netdef.load(NET)
    assert isinstance(module.caffe_thread_chooser, ThreadChooser)
    seen = []
    first = next(node.target for node in module.graph.nodes if node.op == "call_module")
    module.get_submodule(first).register_forward_pre_hook(
        lambda *_: seen.append(torch.get_num_threads()))
    monkeypatch.setattr(threads._State, "choose", lambda self, *_: 1)
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        one = module(data=x)["prob"]
        module.caffe_thread_chooser = None
        two = module(data=x)["prob"]
    assert seen == [1, 2] and torch.get_num_threads() == 2
    torch.testing.assert_close(one, two)


def test_the_count_comes_back_when_the_forward_fails(two_threads, monkeypatch):
    monkeypatch.setattr(threads._State, "choose", lambda self, *_: 1)
    module = netdef.load(NET)
    with pytest.raises(Exception), torch.no_grad():
        module(data=torch.randn(2, 5, 20, 20))  # the wrong number of channels
    assert torch.get_num_threads() == 2


def test_training_and_traced_forwards_are_left_alone(two_threads, monkeypatch):
    monkeypatch.setattr(threads._State, "choose", lambda self, *_: 1)
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
    clock.durations = QUIET
    for size in range(10):
        clock.forward(choose, key=size)
    assert len(choose.states) == 3
    assert (9, 2) in choose.states and (0, 2) not in choose.states  # the oldest went


def test_helpers_take_chunks_as_they_come_free():
    helpers = Helpers.of(1)
    # chunk 0 waits for chunk 1: only a second thread taking chunk 1 lets it finish
    second = threading.Event()
    ran_on = {}

    def work(index):
        ran_on[index] = threading.current_thread().name
        if index == 1:
            second.set()
        elif not second.wait(timeout=30):
            raise TimeoutError("no helper took the other chunk")
        return index * 10
    assert helpers.map(work, 2) == [0, 10]
    assert set(ran_on.values()) == {"MainThread", "netdef-helper"}
    # many more chunks than threads: every one done once, in order
    assert helpers.map(lambda index: index, 50) == list(range(50))


def test_a_failing_chunk_fails_the_caller():
    def work(index):
        if index == 3:
            raise ValueError("chunk 3")
        return index
    with pytest.raises(ValueError, match="chunk 3"):
        Helpers.of(1).map(work, 6)
    assert Helpers.of(1).map(lambda index: index, 3) == [0, 1, 2]  # still serving


@pytest.mark.parametrize("kind", [SharedConv2d, ConvReLU])
@pytest.mark.parametrize("stride, out_channels, bias", [(1, 40, True), (2, 20, False)])
def test_a_shared_convolution_gives_torchs_numbers(two_threads, monkeypatch, kind, stride,
                                                  out_channels, bias):
    monkeypatch.setattr(SharedConv2d, "SHARED_FLOPS", 0)
    conv = kind(16, out_channels, 3, stride=stride, padding=1, bias=bias)
    conv = conv.to(memory_format=torch.channels_last).eval()
    x = torch.randn(1, 16, 23, 19).contiguous(memory_format=torch.channels_last)
    chunks = []
    original = Helpers.map
    monkeypatch.setattr(Helpers, "map", lambda self, work, count: chunks.append(count)
                        or original(self, work, count))
    with torch.no_grad():
        expected = F.conv2d(x, conv.weight, conv.bias, stride, 1)
        if kind is ConvReLU:
            expected = expected.relu()
        with threads.running(SHARED, 2):
            shared = conv(x)
    assert chunks == [2]  # cut by output channels in whole blocks of 8: 40 -> 24 + 16
    torch.testing.assert_close(shared, expected, rtol=1e-5, atol=1e-5)
    assert torch.get_num_threads() == 2


WIDE = """
input: "data" input_shape { dim: 1 dim: 3 dim: 20 dim: 20 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 24 kernel_size: 3 pad: 1 weight_filler { type: "msra" } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "score" type: "Convolution" bottom: "conv" top: "score"
  convolution_param { num_output: 20 kernel_size: 3 stride: 2 weight_filler { type: "xavier" }
  bias_filler { type: "gaussian" } } }
"""


def test_an_optimized_net_sharing_its_work_matches_the_faithful_one(two_threads, monkeypatch):
    monkeypatch.setattr(SharedConv2d, "SHARED_FLOPS", 0)
    faithful = netdef.load(WIDE, seed=3, outputs=["conv", "score"])
    optimized = netdef.load(WIDE, seed=3, optimize=True, outputs=["conv", "score"])
    convolutions = [type(m) for m in optimized.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convolutions and set(convolutions) <= {SharedConv2d, ConvReLU}
    shared = []
    original = Helpers.map
    monkeypatch.setattr(Helpers, "map", lambda self, work, count: shared.append(count)
                        or original(self, work, count))
    x = torch.randn(1, 3, 20, 20)
    with torch.no_grad():
        expected = faithful(data=x)
        assert (expected["conv"] == 0).any()
        with threads.running(SHARED, 2):
            ours = optimized(data=x)
    assert shared == [2, 2]  # both convolutions, cut in two
    for name in expected:
        torch.testing.assert_close(ours[name], expected[name], rtol=1e-5, atol=1e-5)
