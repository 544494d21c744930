"""SSD's `PriorBox` layer (dialect (SSD): the default boxes of every feature cell, normalised,
with their variances).

Runs as `netdef.runtime.detection.PriorBox`. Tested by `tests/test_rules.py`
(test_rule[PriorBox]), and in `tests/test_detection.py`, `tests/test_forks.py`.
"""
from __future__ import annotations

import math

from ._base import Issue, LayerRule, ShapeIssue, fmt, register
from ..modules import runtime

_P = ("prior_box_param",)


def aspect_ratios(param) -> list[float]:
    """1, then each listed ratio not already present (within 1e-6), and its inverse if flip."""
    ratios = [1.0]
    for ratio in param.aspect_ratio:
        if any(abs(ratio - known) < 1e-6 for known in ratios):
            continue
        ratios.append(ratio)
        if param.flip:
            ratios.append(1.0 / ratio)
    return ratios


def priors_per_cell(param) -> int:
    return len(aspect_ratios(param)) * len(param.min_size) + len(param.max_size)


@register
class PriorBox(LayerRule):
    description = ("dialect (SSD): the default boxes of every feature cell, normalised, with their "
                   "variances")
    family = "other"
    bottoms = (2, 2)  # the feature map, the image
    params = ("prior_box_param",)

    def check_params(self, layer):
        param = layer.prior_box_param
        if not param.min_size:
            yield Issue("min_size is required", _P)
        for index, size in enumerate(param.min_size):
            if not size > 0:
                yield Issue(f"min_size must be positive, got {size:g}", _P + ("min_size", index))
        if param.max_size and len(param.max_size) != len(param.min_size):
            yield Issue(f"{len(param.max_size)} max_size values for {len(param.min_size)} "
                        "min_size values; give one per min_size", _P + ("max_size", 0))
        for index, (low, high) in enumerate(zip(param.min_size, param.max_size)):
            if not high > low:
                yield Issue(f"max_size {high:g} must exceed min_size {low:g}",
                            _P + ("max_size", index))
        for index, ratio in enumerate(param.aspect_ratio):
            if not ratio > 0 or math.isinf(ratio):
                yield Issue(f"aspect_ratio must be positive, got {ratio:g}",
                            _P + ("aspect_ratio", index))
        if len(param.variance) not in (0, 1, 4):
            yield Issue(f"variance takes 1 or 4 values, got {len(param.variance)}",
                        _P + ("variance", 0))
        for index, value in enumerate(param.variance):
            if not value > 0:
                yield Issue(f"variance must be positive, got {value:g}", _P + ("variance", index))
        yield from _either(param, "img_size", ("img_h", "img_w"))
        yield from _either(param, "step", ("step_h", "step_w"))

    def top_shapes(self, layer, bottoms):
        features, image = bottoms
        if len(features) != 4 or len(image) != 4:
            raise ShapeIssue(f"takes a feature map and an image, both N x C x H x W; got "
                             f"{fmt(features)} and {fmt(image)}")
        cells = features[2] * features[3]
        return [(1, 2, cells * priors_per_cell(layer.prior_box_param) * 4)]

    def summary(self, layer):
        param = layer.prior_box_param
        sizes = ",".join(f"{s:g}" for s in param.min_size)
        return f"min {sizes}, {priors_per_cell(param)} per cell"

    def lower(self, layer, ctx):
        param = layer.prior_box_param
        image = ((param.img_h, param.img_w) if param.img_h or param.img_w
                 else (param.img_size, param.img_size) if param.img_size else None)
        step = ((param.step_h, param.step_w) if param.step_h or param.step_w
                else (param.step, param.step) if param.step else None)
        return runtime("PriorBox", min_sizes=tuple(param.min_size),
                       max_sizes=tuple(param.max_size), aspect_ratios=tuple(aspect_ratios(param)),
                       clip=param.clip, variances=tuple(param.variance), image_size=image,
                       step=step, offset=param.offset)


def _either(param, single: str, pair: tuple):
    """SSD's rule: a size is given once for both axes, or per axis (both), not both ways."""
    given = [name for name in pair if param.HasField(name)]
    if param.HasField(single) and given:
        yield Issue(f"give either {single} or {'/'.join(pair)}, not both", _P + (given[0],))
    elif len(given) == 1:
        yield Issue(f"give both {' and '.join(pair)}", _P + (given[0],))
