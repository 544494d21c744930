from __future__ import annotations

from ._base import register
from ._sink import SinkRule


@register
class Silence(SinkRule):
    type_name = "Silence"
    description = "consumes bottoms so they are not net outputs; no tops"

    def lower(self, layer, ctx):
        return None
