"""SSD's `AnnotatedData` layer (dialect (SSD): images and their boxes from an LMDB of
AnnotatedDatum records).

A data layer: its tops are graph inputs, fed in training by netdef/training/annotated.py
(the fork's augmentation and label layout). Tested by `tests/test_rules.py`
(test_rule[AnnotatedData]), `tests/test_forks.py` and `tests/test_annotated.py`.
"""
from __future__ import annotations

from ._base import register
from ._data import DataRule, batch_issues, image_side


@register
class AnnotatedData(DataRule):
    description = "dialect (SSD): images and their boxes from an LMDB of AnnotatedDatum records"
    params = ("annotated_data_param", "data_param", "transform_param")

    def check_params(self, layer):
        yield from batch_issues(layer.data_param.batch_size, ("data_param",))

    def data_source(self, layer, ctx):
        from netdef.training.data import annotated_records
        return annotated_records(layer, ctx)

    def input_shapes(self, layer):
        resize = layer.transform_param.resize_param
        side = image_side(layer, resize.height, resize.width)
        data = (layer.data_param.batch_size, 3) + side if side else None
        return [data, None][: len(layer.top)]  # labels: 1 x 1 x boxes x 8, as many as the data
