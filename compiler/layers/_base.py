"""The LayerRule base class, the registry decorator and shape helpers."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

from netdef.errors import NetdefError, ParameterError, ShapeError

Shape = tuple  # a blob shape: tuple of ints
FieldPath = tuple  # a path inside the layer, e.g. ("convolution_param", "stride", 0)

_RULES: dict[str, "LayerRule"] = {}


@dataclass
class Issue:
    """A problem a rule finds in one layer; the pass adds file, line and layer."""

    message: str
    field: FieldPath = ()
    kind: type[NetdefError] = ParameterError
    warning: bool = False


class ShapeIssue(Exception):
    """Raised by a shape rule when its bottoms or parameters cannot work together."""

    def __init__(self, message: str, field: FieldPath = (), kind=ShapeError):
        super().__init__(message)
        self.issue = Issue(message, field, kind)


def register(cls):
    """Class decorator: make `cls` the rule for its `type_name`, by default the class name."""
    cls.type_name = cls.__dict__.get("type_name") or cls.__name__
    if cls.type_name in _RULES:
        raise RuntimeError(f"layer type {cls.type_name!r} registered twice")
    _RULES[cls.type_name] = cls()
    return cls


def registered_rules() -> dict[str, "LayerRule"]:
    return dict(sorted(_RULES.items(), key=lambda item: item[0].lower()))


class LayerRule:
    """Everything netdef knows about one Caffe layer type.

    Subclasses set the class attributes and override what differs:
    `check_params` for static parameter checks and `top_shapes` for the shape
    rule (called only when every bottom shape is known), `spatial_map` for
    the coordinate map and receptive field.
    """

    type_name: str = ""  # the prototxt `type`; @register sets it to the class name
    description: str = ""
    family: str = "other"  # conv, pool, pointwise, norm, merge, reshape, data, loss, sink, crf
    bottoms: tuple[int, int | None] = (1, 1)  # (min, max); None: no maximum
    tops: tuple[int, int | None] = (1, 1)
    params: tuple[str, ...] = ()  # the *_param fields this type reads
    is_input: bool = False  # a data layer: its tops are graph inputs
    tops_match_bottoms: bool = False  # one top per bottom (Convolution, Split-like layers)
    loss_weight: float = 0.0  # top 0's weight in the objective when the layer sets none
    bounded_tops: bool = False  # the tops' leading axis is an upper bound the data decides
    image_info_bottom: int | None = None  # a bottom read as (height, width, scale) of the image
    output_kind: str | None = None  # "detections": rows `netdef run` draws and writes as JSON

    def served_as(self, layer) -> "LayerRule":
        """The rule that handles this particular layer: this one, unless a type hands some of
        its layers to another rule (a known Python layer served built in)."""
        return self

    def check_params(self, layer) -> Iterator[Issue]:
        return iter(())

    def top_shapes(self, layer, bottoms: list[Shape]) -> list[Shape | None]:
        """Shapes of the tops given the bottoms' (Caffe's Reshape)."""
        raise NotImplementedError

    def learned_shapes(self, layer, bottoms: list[Shape]) -> list[Shape]:
        """The shapes of the layer's learned blobs, in Caffe's order: what a caffemodel holds
        for it. The checks refuse a file whose blobs would exceed Caffe's limits before
        anything is allocated; `info` counts parameters with them."""
        return []

    def flops(self, layer, bottoms: list[Shape], tops: list[Shape]) -> int:
        """Floating-point operations of one forward pass: by default one per output value;
        layers that multiply and add (convolutions, inner products) count both."""
        return sum(count(top) for top in tops if top is not None)

    def spatial_map(self, layer, ctx) -> list:
        """Each top's field (see _spatial): by default the receptive field ends,
        since a layer not known to keep positions may mix all of them."""
        return [ctx.ended()] * len(layer.top)

    def lower(self, layer, ctx):
        """A ModuleSpec (see _lowering) computing the tops from the bottoms with Caffe's
        semantics, or None for layers that compute nothing (Silence)."""
        from ..modules import LoweringIssue
        raise LoweringIssue(f"netdef cannot run {self.type_name} layers yet")

    def fillers(self, layer) -> tuple:
        """(FillerParameter or None, default value) per blob of the lowered module, in Caffe order."""
        return ()

    def caffe_blobs(self, layer, blobs: list) -> list:
        """The module's tensors (numpy, Caffe order) as a caffemodel stores this layer's blobs."""
        return blobs

    def summary(self, layer) -> str:
        """The key parameters in a few characters, for drawings (e.g. '3x3 /2 pad 1, 64')."""
        return ""

    def write_solution(self, layer, solution: dict) -> bool:
        """Write values the passes derived (ctx.solution) into the layer; True if it changed."""
        return False

    def upgrade(self, layer) -> None:
        """Rewrite this type's legacy settings in place (Caffe's per-type upgrades)."""

    def data_source(self, layer, ctx):
        """For data layers: the netdef.training.data Source that feeds the tops in training (ctx is a
        netdef.training.data.SourceContext), or None where the user supplies the data."""
        return None

    def input_shapes(self, layer) -> list[Shape | None]:
        """For data layers: the tops' shapes as far as the parameters fix them."""
        return [None] * len(layer.top)


# ------------------------------------------------------------------ helpers
def canonical_axis(axis: int, ndim: int, field: FieldPath = ()) -> int:
    """Caffe's CanonicalAxisIndex: negative axes count from the end."""
    if not -ndim <= axis < ndim:
        raise ShapeIssue(f"axis {axis} is out of range for a {ndim}-axis blob", field)
    return axis + ndim if axis < 0 else axis


def count(shape: Shape, start: int = 0, end: int | None = None) -> int:
    return math.prod(shape[start:end])


def fmt(shape: Shape) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"


def require_same_shapes(bottoms: list[Shape], names=("bottom 0", "bottom 1")) -> None:
    first = bottoms[0]
    for index, shape in enumerate(bottoms[1:], start=1):
        if shape != first:
            raise ShapeIssue(f"bottom {index} has shape {fmt(shape)} but bottom 0 has {fmt(first)}; "
                             "they must be equal", ("bottom", index))


def positive(value, field: FieldPath, what: str) -> Iterator[Issue]:
    if value <= 0:
        yield Issue(f"{what} must be positive, got {value}", field)


def zero_fields(param, names, prefix: FieldPath) -> Iterator[Issue]:
    """An issue for every zero among the named (scalar or repeated) fields."""
    for name in names:
        value = getattr(param, name)
        if isinstance(value, int):
            if param.HasField(name) and value == 0:
                yield Issue(f"{name} must be positive, got 0", prefix + (name,))
        else:
            for index, item in enumerate(value):
                if item == 0:
                    yield Issue(f"{name} must be positive, got 0", prefix + (name, index))
