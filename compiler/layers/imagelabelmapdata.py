"""Caffe's `ImageLabelmapData` layer (dialect (HED): images with edge label maps, listed in a text
file).

A data layer: its tops are graph inputs. Tested by `tests/test_rules.py`
(test_rule[ImageLabelmapData]).
"""
from __future__ import annotations

from ._base import register
from ._data import DataRule


@register
class ImageLabelmapData(DataRule):
    description = "dialect (HED): images with edge label maps, listed in a text file"
    tops = (2, 2)
    params = ("image_data_param", "transform_param")
