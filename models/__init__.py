"""The flagship nets, installed as `netdef.models` (`netdef example NAME -o DIR` copies one
out): FCN-32s, FCN-16s, FCN-8s, FCN-8s with a CRF-RNN head, and the five-pathway region net.
`fcn.py` and `region_net.py` are the scripts that write them."""
from __future__ import annotations

from importlib import resources


def names() -> list[str]:
    """The example nets, by name (the prototxt's file name without .prototxt)."""
    return sorted(entry.name[: -len(".prototxt")] for entry in resources.files(__name__).iterdir()
                  if entry.name.endswith(".prototxt"))


def text(name: str) -> str:
    """The prototxt of the example net `name`."""
    return resources.files(__name__).joinpath(f"{name}.prototxt").read_text(encoding="utf-8")
