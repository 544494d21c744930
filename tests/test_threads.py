"""CPU forwards take the free cores only (netdef/runtime/threads.py), and give the caller's
thread count back."""
from __future__ import annotations

import pytest
import torch

import netdef
from netdef.runtime import threads

from .test_fast import NET


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def spy_on_forward(module, seen):
    """Record torch's thread count while the module's first layer runs."""
    first = next(node.target for node in module.graph.nodes if node.op == "call_module")
    module.get_submodule(first).register_forward_pre_hook(
        lambda *_: seen.append(torch.get_num_threads()))


def test_a_busy_machine_gets_one_thread_and_the_caller_keeps_its_count(two_threads, monkeypatch):
    monkeypatch.setattr(threads, "CPUS", 2)
    module = netdef.load(NET)
    x = torch.randn(2, 3, 20, 20)
    seen = []
    spy_on_forward(module, seen)
    with torch.no_grad():
        monkeypatch.setattr(threads, "running_elsewhere", lambda: 0)
        quiet = module(data=x)["prob"]
        monkeypatch.setattr(threads, "running_elsewhere", lambda: 2)
        busy = module(data=x)["prob"]
        monkeypatch.setattr(threads, "running_elsewhere", lambda: 1)
        module(data=x)
    assert seen == [2, 1, 1]
    assert torch.get_num_threads() == 2
    torch.testing.assert_close(busy, quiet)


def test_the_count_comes_back_when_the_forward_fails(two_threads, monkeypatch):
    monkeypatch.setattr(threads, "running_elsewhere", lambda: 5)
    module = netdef.load(NET)
    with pytest.raises(Exception), torch.no_grad():
        module(data=torch.randn(2, 5, 20, 20))  # the wrong number of channels
    assert torch.get_num_threads() == 2


def test_training_and_traced_forwards_are_left_alone(two_threads, monkeypatch):
    monkeypatch.setattr(threads, "running_elsewhere", lambda: 5)
    module = netdef.load(NET)
    module.train()
    seen = []
    spy_on_forward(module, seen)
    module(data=torch.randn(2, 3, 20, 20))
    module.eval()
    with torch.no_grad():
        module(data=torch.randn(2, 3, 20, 20, device="meta"))
    assert seen == [2, 2]


def test_this_process_does_not_count_itself():
    """The calling thread is running while it reads /proc: it is found among this process's
    running threads, so it is not taken for another process."""
    assert threads._own_running() >= 1
    assert threads.running_elsewhere() >= 0
