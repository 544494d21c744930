"""SSD's `AnnotatedData` layer (dialect (SSD): images and their boxes from an LMDB of
AnnotatedDatum records).

A data layer: its tops are graph inputs. Checked; reading its database is the data path's.
Tested by `tests/test_rules.py` (test_rule[AnnotatedData]), and in `tests/test_forks.py`.
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
        from netdef.training.data import data_error
        raise data_error("netdef does not read AnnotatedData databases yet", ctx.net_path, layer)

    def input_shapes(self, layer):
        resize = layer.transform_param.resize_param
        side = image_side(layer, resize.height, resize.width)
        data = (layer.data_param.batch_size, 3) + side if side else None
        return [data, None][: len(layer.top)]  # labels: 1 x 1 x boxes x 8, as many as the data
