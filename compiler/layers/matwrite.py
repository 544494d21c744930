"""Caffe's `MatWrite` layer (dialect (DeepLab): writes its bottom to .mat files; a sink).

Computes nothing at run time. Tested by `tests/test_rules.py` (test_rule[MatWrite]).
"""
from __future__ import annotations

from ._base import register
from ._sink import SinkRule


@register
class MatWrite(SinkRule):
    description = "dialect (DeepLab): writes its bottom to .mat files; a sink"
    params = ("mat_write_param",)
