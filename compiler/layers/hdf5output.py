"""Caffe's `HDF5Output` layer (writes its two bottoms (data, label) to an HDF5 file).

Computes nothing at run time. Tested by `tests/test_rules.py` (test_rule[HDF5Output]).
"""
from __future__ import annotations

from ._base import register
from ._sink import SinkRule


@register
class HDF5Output(SinkRule):
    description = "writes its two bottoms (data, label) to an HDF5 file"
    bottoms = (2, 2)
    params = ("hdf5_output_param",)
