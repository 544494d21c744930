"""Caffe's `Data` layer (reads Datum records from LevelDB/LMDB (image shape comes from the
database)).

A data layer: its tops are graph inputs, fed in training by its data_source
(netdef/training/databases.py). Tested by `tests/test_rules.py` (test_rule[Data]) and
`tests/test_databases.py`.
"""
from __future__ import annotations

from ._base import register
from ._data import DataRule, batch_issues, with_label


@register
class Data(DataRule):
    description = "reads Datum records from LevelDB/LMDB (image shape comes from the database)"
    params = ("data_param", "transform_param")

    def check_params(self, layer):
        yield from batch_issues(layer.data_param.batch_size, ("data_param",))

    def data_source(self, layer, ctx):
        from netdef.training.data import DatabaseRecords
        return DatabaseRecords(layer, ctx)

    def input_shapes(self, layer):
        return with_label(None, layer.data_param.batch_size, len(layer.top))
