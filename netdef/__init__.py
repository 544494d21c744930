"""netdef: a Caffe-style declarative network compiler.

    netdef.parse(path_or_text)          -> NetParameter (upgraded to the current format)
    netdef.check(path_or_text, ...)     -> list of problems (errors and warnings)
    netdef.analyze(path_or_text, ...)   -> Report (shapes per blob); raises on errors
"""
from __future__ import annotations

from .errors import (
    AlignmentError,
    GraphError,
    LoweringError,
    NetdefError,
    ParameterError,
    Problem,
    PrototxtSyntaxError,
    SchemaError,
    ShapeError,
    UnknownField,
    UnknownLayerType,
    UsageError,
    WeightError,
)

__version__ = "0.1.0"


def parse(source, *, strict: bool = False):
    """Parse a prototxt (path, text or binary bytes) and upgrade it to the current format."""
    from .compiler.parse import parse_net

    return parse_net(source, strict=strict).net


def check(source, *, phase: str = "TEST", inputs=None, strict: bool = False) -> list[Problem]:
    """Every problem in a net, errors and warnings, in line order (syntax errors raise)."""
    from .compiler.analysis import check_net

    return check_net(source, phase=phase, inputs=inputs, strict=strict)[1]


def analyze(source, inputs=None, *, phase: str = "TEST", strict: bool = False):
    """Shapes of every blob; raises the net's errors as one NetdefError."""
    from .compiler.analysis import analyze as _analyze

    return _analyze(source, phase=phase, inputs=inputs, strict=strict)


__all__ = [
    "parse", "check", "analyze", "NetdefError", "PrototxtSyntaxError", "SchemaError",
    "UnknownLayerType", "UnknownField", "ParameterError", "GraphError", "ShapeError",
    "AlignmentError", "LoweringError", "WeightError", "UsageError", "Problem",
]
