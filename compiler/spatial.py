"""Coordinate maps and receptive fields, one spatial axis at a time.

Unit i of a blob along an axis is centred at input coordinate
`offset + i * stride` (pixel centres at integers): the affine algebra of
Caffe's coord_map. Its receptive field, the input pixels it can depend on, is
kept exactly as a periodic pattern: every unit with the same phase
`i mod period` has the same support relative to its centre. Sliding windows
keep the period at 1; upsampling can make it vary (a stride-2 deconvolution
with a 3-tap kernel reads two input units and one, alternately).

A blob's `Field` maps each image input it depends on to one `AxisMap` per
spatial axis; `EVERYWHERE` marks a blob that depends on every position
(after InnerProduct, global pooling...), where the receptive field ends.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterable

Support = tuple[Fraction, Fraction] | None  # (lo, hi) around the unit's centre; None: no input

MAX_PERIOD = 512  # beyond it a pattern collapses to its envelope (an upper bound)
# Exact phase tracking costs (output phases) x (input units read per phase); past this budget
# the input collapses to its envelope first, so no parameter value (a kernel or a zoom of
# 10^6) makes the pass loop that many times.
MAX_WORK = 8192


@dataclass(frozen=True)
class AxisMap:
    stride: Fraction
    offset: Fraction
    support: tuple[Support, ...]  # one entry per phase

    @classmethod
    def identity(cls) -> "AxisMap":
        return cls(Fraction(1), Fraction(0), ((Fraction(0), Fraction(0)),))

    @property
    def size(self) -> int:
        """The widest receptive field, in input pixels."""
        return max((int(hi - lo) + 1 for lo, hi in filter(None, self.support)), default=0)

    def centre(self, unit: int) -> Fraction:
        return self.offset + unit * self.stride

    def aligned_with(self, other: "AxisMap") -> bool:
        return self.stride == other.stride and self.offset == other.offset

    # --------------------------------------------------------------- layers
    def window(self, kernel: int, stride: int, pad: int, dilation: int = 1) -> "AxisMap":
        """Convolution and pooling: unit a reads units a*s - p + j*d, j < k."""
        extent = dilation * (kernel - 1) + 1
        new_stride = self.stride * stride
        new_offset = self.offset + self.stride * (Fraction(extent - 1, 2) - pad)
        period = self.period // math.gcd(self.period, stride)
        base = self if period * min(kernel, 2 * self.period) <= MAX_WORK else self._enveloped()
        if base.period == 1:  # the common case, in closed form
            if base.support[0] is None:
                return AxisMap(new_stride, new_offset, (None,))
            half = self.stride * Fraction(extent - 1, 2)
            lo, hi = base.support[0]
            return AxisMap(new_stride, new_offset, ((lo - half, hi + half),))
        taps = _ends(range(kernel), base.period)
        return base._derive(new_stride, new_offset, period,
                            lambda a: (a * stride - pad + j * dilation for j in taps))

    def transposed_window(self, kernel: int, stride: int, pad: int, dilation: int = 1) -> "AxisMap":
        """Deconvolution: output o receives input i wherever o + p - i*s = j*d, j < k."""
        extent = dilation * (kernel - 1) + 1
        new_stride = self.stride / stride
        new_offset = self.offset - new_stride * (Fraction(extent - 1, 2) - pad)
        base = self._enveloped() if stride * self.period > MAX_PERIOD or \
            stride * self.period * min(kernel, 2 * self.period) > MAX_WORK else self
        if stride * base.period > MAX_PERIOD:  # every tap j sits (e-1)/2 - j*d outputs away
            reach = new_stride * Fraction(extent - 1, 2)
            return base._widened(new_stride, new_offset, -reach, reach)
        step = stride // math.gcd(dilation, stride)  # taps that reach one output phase

        def sources(o):
            first = next((j for j in range(min(step, kernel))
                          if (o + pad - j * dilation) % stride == 0), None)
            taps = _ends(range(first, kernel, step), base.period) if first is not None else ()
            return ((o + pad - j * dilation) // stride for j in taps)
        return base._derive(new_stride, new_offset, stride * base.period, sources)

    def shifted(self, units: int) -> "AxisMap":
        """Crop: output unit a is input unit a + units."""
        return self._derive(self.stride, self.centre(units), self.period, lambda a: (a + units,))

    def resampled(self, ratio: Fraction, start: Fraction) -> "AxisMap":
        """Linear interpolation: output o reads input position start + o*ratio."""
        ratio, start = Fraction(ratio), Fraction(start)
        base = self._enveloped() if ratio.denominator * self.period > MAX_PERIOD else self
        if ratio.denominator * base.period > MAX_PERIOD:
            # unit floor(q) sits frac(q) strides before position q, unit floor(q) + 1 after it
            smallest, largest = _fractions(start, ratio)
            after = 1 - smallest if smallest is not None else Fraction(0)
            return base._widened(self.stride * ratio, self.offset + start * self.stride,
                                 -largest * self.stride, after * self.stride)

        def sources(o):
            position = start + o * ratio
            low = math.floor(position)
            return (low,) if position == low else (low, low + 1)
        return base._derive(self.stride * ratio, self.offset + start * self.stride,
                            ratio.denominator * base.period, sources)

    # ------------------------------------------------------------- plumbing
    @property
    def period(self) -> int:
        return len(self.support)

    def _support_of(self, unit: int) -> tuple[Fraction, Fraction] | None:
        """Absolute support of one unit, in input pixels."""
        relative = self.support[unit % self.period]
        if relative is None:
            return None
        centre = self.centre(unit)
        return centre + relative[0], centre + relative[1]

    def _derive(self, stride: Fraction, offset: Fraction, period: int,
                sources: Callable[[int], Iterable[int]]) -> "AxisMap":
        patterns = []
        for unit in range(period):
            spans = [span for span in map(self._support_of, sources(unit)) if span is not None]
            centre = offset + unit * stride
            patterns.append((min(lo for lo, _ in spans) - centre, max(hi for _, hi in spans) - centre)
                            if spans else None)
        return AxisMap(stride, offset, _shortest_period(patterns))

    def _enveloped(self) -> "AxisMap":
        """Self with one phase: the hull of every phase's support (an upper bound)."""
        spans = [s for s in self.support if s is not None]
        if not spans:
            return AxisMap(self.stride, self.offset, (None,))
        return AxisMap(self.stride, self.offset,
                       ((min(lo for lo, _ in spans), max(hi for _, hi in spans)),))

    def _widened(self, stride: Fraction, offset: Fraction, before: Fraction,
                 after: Fraction) -> "AxisMap":
        """A one-phase map whose units read this (one-phase) map's units from `before` to
        `after` input pixels around their centres."""
        if self.support[0] is None:
            return AxisMap(stride, offset, (None,))
        lo, hi = self.support[0]
        return AxisMap(stride, offset, ((lo + before, hi + after),))

    def union(self, other: "AxisMap") -> "AxisMap":
        """Supports of two aligned maps joined phase by phase."""
        period = math.lcm(self.period, other.period)
        if period > MAX_PERIOD:
            return self._enveloped().union(other._enveloped())
        joined = []
        for phase in range(period):
            spans = [s for s in (self.support[phase % self.period],
                                 other.support[phase % other.period]) if s is not None]
            joined.append((min(lo for lo, _ in spans), max(hi for _, hi in spans)) if spans else None)
        return AxisMap(self.stride, self.offset, _shortest_period(joined))

    def to_json(self) -> tuple:
        return self.size, number(self.stride), number(self.offset)


def _ends(taps: range, count: int) -> range | list:
    """The first and last `count` of `taps`: with an input of period `count`, the others repeat
    phases of these at positions in between, so they never hold a unit's extremes."""
    if len(taps) <= 2 * count:
        return taps
    return list(taps[:count]) + list(taps[-count:])


def _fractions(start: Fraction, ratio: Fraction) -> tuple[Fraction | None, Fraction]:
    """(smallest non-zero or None, largest) fractional part of start + o*ratio over o >= 0.
    With D the common denominator, the numerators mod D are r + t*D/den for t < den."""
    den = ratio.denominator
    common = math.lcm(den, start.denominator)
    step = common // den
    residue = (start.numerator * (common // start.denominator)) % step
    smallest = residue if residue else (step if den > 1 else None)
    largest = residue + (den - 1) * step
    return (Fraction(smallest, common) if smallest is not None else None), Fraction(largest, common)


def _shortest_period(patterns: list) -> tuple:
    n = len(patterns)
    for period in range(1, n + 1):
        if n % period == 0 and all(patterns[i] == patterns[i % period] for i in range(n)):
            return tuple(patterns[:period])
    return tuple(patterns)


def number(value: Fraction) -> int | float:
    return int(value) if value.denominator == 1 else float(value)


# ------------------------------------------------------------------ fields
class _Everywhere:
    """The field of a blob that depends on every input position."""

    def __repr__(self):
        return "EVERYWHERE"

    def __bool__(self):
        return True


EVERYWHERE = _Everywhere()
Field = dict  # input name -> tuple[AxisMap, ...]; or EVERYWHERE


def map_axes(field, axis_maps: Callable[[tuple], tuple | None]):
    """Apply a per-blob transformation to every input's maps; None from it ends the field."""
    if field is EVERYWHERE:
        return EVERYWHERE
    result = {}
    for name, maps in field.items():
        mapped = axis_maps(maps)
        if mapped is None:
            return EVERYWHERE
        result[name] = mapped
    return result


def describe(maps: tuple) -> str:
    strides = "x".join(str(number(m.stride)) for m in maps)
    offsets = "x".join(str(number(m.offset)) for m in maps)
    return f"stride {strides}, offset {offsets}"


# ------------------------------------------------------------------ context
@dataclass
class SpatialBottom:
    name: str
    shape: tuple | None
    field: object  # Field or EVERYWHERE


class SpatialContext:
    """What a rule's spatial map sees: its bottoms' fields and shapes, its tops' shapes.

    Rules report alignment trouble through `warn`/`error` and may leave a
    `solution` (values the pass derived, e.g. solved crop offsets) for later passes.
    """

    def __init__(self, bottoms: list[SpatialBottom], top_shapes: list, solve_crops: bool = True):
        self.bottoms = bottoms
        self.solve_crops = solve_crops
        self.top_shapes = top_shapes
        self.issues: list = []
        self.solution: dict = {}

    def warn(self, message: str, field_path: tuple = ()) -> None:
        self._report(message, field_path, warning=True)

    def error(self, message: str, field_path: tuple = ()) -> None:
        self._report(message, field_path, warning=False)

    def _report(self, message, field_path, warning):
        from netdef.errors import AlignmentError

        from .layers._base import Issue
        self.issues.append(Issue(message, field_path, AlignmentError, warning=warning))

    def ended(self):
        """Tops that depend on every position of whatever image their bottoms come from."""
        return EVERYWHERE if any(b.field for b in self.bottoms) else {}

    def merged(self, bottoms: list[SpatialBottom] | None = None):
        """One field for a top that reads several bottoms at the same positions.

        Bottoms that reach the same input must be aligned (same stride and
        offset on every axis); a mismatch is a warning naming both.
        """
        result: dict = {}
        owners: dict = {}
        for bottom in self.bottoms if bottoms is None else bottoms:
            if bottom.field is EVERYWHERE:
                return EVERYWHERE
            for name, maps in bottom.field.items():
                if name not in result:
                    result[name], owners[name] = maps, bottom.name
                elif len(maps) == len(result[name]) and all(
                        a.aligned_with(b) for a, b in zip(maps, result[name])):
                    result[name] = tuple(a.union(b) for a, b in zip(result[name], maps))
                else:
                    self.warn(f"bottoms '{owners[name]}' and '{bottom.name}' are not aligned on "
                              f"input '{name}': '{owners[name]}' has {describe(result[name])}, "
                              f"'{bottom.name}' has {describe(maps)}")
        return result

    def passthrough(self, tops: int):
        """Every top at bottom 0's positions (copies, channel slices, pointwise maps)."""
        return [self.bottoms[0].field] * tops

    def keeps_positions(self, raw_axis: int) -> bool:
        """Whether an operation along `raw_axis` of bottom 0 leaves the spatial axes (2, 3...) alone."""
        shape = self.bottoms[0].shape
        if shape is None:
            return raw_axis in (0, 1)
        ndim = len(shape)
        return -ndim <= raw_axis < ndim and (raw_axis % ndim) < 2
