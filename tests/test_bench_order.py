"""The benches' round orders (bench/bench_zoo.py: williams_orders) are balanced: a kind that
always ran right after the same neighbour (OpenCV's threads still awake, say) was timed
5-10% off (docs/benchmarks.md, "the chooser's rule")."""
from __future__ import annotations

import sys
from collections import Counter

import pytest

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from bench_zoo import williams_orders  # noqa: E402


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 6, 7])
def test_every_kind_runs_first_and_after_every_other_equally_often(count):
    orders = williams_orders(count)
    assert all(sorted(order) == list(range(count)) for order in orders)
    firsts = Counter(order[0] for order in orders)
    assert set(firsts) == set(range(count)) and len(set(firsts.values())) == 1
    neighbours = Counter(pair for order in orders for pair in zip(order, order[1:]))
    every_pair = {(a, b) for a in range(count) for b in range(count) if a != b}
    assert set(neighbours) == every_pair
    assert len(set(neighbours.values())) <= 1
