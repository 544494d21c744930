from __future__ import annotations

from ._base import register
from ._sink import SinkRule


@register
class Silence(SinkRule):
    description = "consumes bottoms so they are not net outputs; no tops"

    def lower(self, layer, ctx):
        return None
