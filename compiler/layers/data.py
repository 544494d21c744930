from __future__ import annotations

from ._base import register
from ._data import DataRule, batch_issues, with_label


@register
class Data(DataRule):
    type_name = "Data"
    description = "reads Datum records from LevelDB/LMDB (image shape comes from the database)"
    params = ("data_param", "transform_param")

    def check_params(self, layer):
        yield from batch_issues(layer.data_param.batch_size, ("data_param",))

    def input_shapes(self, layer):
        return with_label(None, layer.data_param.batch_size, len(layer.top))
