"""Every layer rule with its default parameters on blobs of unusual rank or with empty axes:
whatever `check` accepts, `load` builds and the forward runs (Caffe's count(1) views a 1-axis
blob as N x 1); whatever it cannot run is a NetdefError, never another exception."""
from __future__ import annotations

import pytest
import torch

import netdef
from netdef.compiler.layers import registry

SHAPES = [(4,), (2, 3), (1, 3, 4, 4), (1, 2, 3, 4, 5), (0, 3, 4, 4), (1, 0, 4, 4)]
RULES = [name for name, rule in registry().items() if not rule.is_input]


def one_layer(type_name: str, shape: tuple, bottoms: int, tops: int) -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    inputs = "\n".join(f'input: "x{i}" input_shape {{ {dims} }}' for i in range(bottoms))
    wiring = " ".join([f'bottom: "x{i}"' for i in range(bottoms)] +
                      [f'top: "y{i}"' for i in range(tops)])
    return f'{inputs}\nlayer {{ name: "l" type: "{type_name}" {wiring} }}\n'


@pytest.mark.parametrize("type_name", RULES)
def test_what_check_accepts_runs(type_name):
    rule = registry()[type_name]
    bottoms, tops = max(rule.bottoms[0], 1), max(rule.tops[0], 1)
    for shape in SHAPES:
        text = one_layer(type_name, shape, bottoms, tops)
        try:
            if any(not p.warning for p in netdef.check(text)):
                continue
            module = netdef.load(text)
            with torch.no_grad():
                module(**{f"x{i}": torch.rand(shape) for i in range(bottoms)})
        except (netdef.NetdefError, netdef.UsageError):
            continue
