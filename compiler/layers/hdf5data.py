"""Caffe's `HDF5Data` layer (reads datasets named after its tops from the HDF5 files listed in
source).

A data layer: its tops are graph inputs, fed in training by its data_source. Tested by
`tests/test_rules.py` (test_rule[HDF5Data]), and in `tests/test_data.py`,
`tests/test_solver.py`, `tests/test_train.py`.
"""
from __future__ import annotations

from ._base import register
from ._data import DataRule, batch_issues


@register
class HDF5Data(DataRule):
    description = "reads datasets named after its tops from the HDF5 files listed in source"
    tops = (1, None)
    params = ("hdf5_data_param",)

    def data_source(self, layer, ctx):
        from netdef.training.data import HDF5Files
        return HDF5Files(layer, ctx)

    def check_params(self, layer):
        yield from batch_issues(layer.hdf5_data_param.batch_size, ("hdf5_data_param",))
