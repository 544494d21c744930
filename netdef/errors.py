"""The errors netdef reports to users.

Every user-facing failure is a NetdefError. Passes never raise on the first
problem: they collect `Problem`s, and the caller raises one NetdefError that
carries them all (its class is the class of the first error).
"""
from __future__ import annotations

from dataclasses import dataclass


class NetdefError(Exception):
    """Base of every error netdef reports about a user's files."""

    def __init__(self, message: str = "", *, problems: list[Problem] | None = None):
        self.problems = problems or []
        super().__init__(message or "\n".join(p.format() for p in self.problems))

    @property
    def line(self) -> int | None:
        return self.problems[0].line if self.problems else None


class PrototxtSyntaxError(NetdefError):
    """The file is not well-formed protobuf text (or binary)."""


class SchemaError(NetdefError):
    """Well-formed, but names a field, enum value or type the schema lacks."""


class UnknownLayerType(SchemaError):
    """A layer's `type` is not a registered layer rule."""


class UnknownField(SchemaError):
    """A field the schema does not have (an error only with --strict)."""


class ParameterError(NetdefError):
    """A layer parameter has a value the layer cannot work with."""


class GraphError(NetdefError):
    """The layers do not connect into a valid DAG (missing bottoms, cycles...)."""


class ShapeError(NetdefError):
    """Blob shapes that a layer cannot accept."""


class AlignmentError(NetdefError):
    """Paths that merge are not aligned in input coordinates."""


class LoweringError(NetdefError):
    """The net cannot be turned into a torch module."""


class WeightError(NetdefError):
    """A weights file does not fit the net."""


class SolverError(NetdefError):
    """A solver definition that cannot train (unknown solver type or lr policy, missing net...)."""


class DataError(NetdefError):
    """A data layer's source cannot be read, or its items do not fit the layer."""


class UsageError(Exception):
    """Bad command-line or API usage (exit code 2), not a problem in a file."""


@dataclass
class Problem:
    """One finding, located in the user's file.

    `kind` is the NetdefError subclass it belongs to; warnings use it too, so
    `--strict` can promote them.
    """

    kind: type[NetdefError]
    message: str
    path: str = "<string>"
    line: int | None = None
    layer: str | None = None
    layer_type: str | None = None
    warning: bool = False

    def format(self) -> str:
        where = f"{self.path}:{self.line}:" if self.line else f"{self.path}:"
        parts = [where]
        if self.layer is not None:
            parts.append(f"layer '{self.layer}' ({self.layer_type or '?'}):")
        if self.warning:
            parts.append("warning:")
        parts.append(self.message)
        return " ".join(parts)



def raise_if_errors(problems: list[Problem]) -> None:
    """Raise one NetdefError holding every error in `problems`, if any."""
    errors = [p for p in problems if not p.warning]
    if errors:
        raise errors[0].kind(problems=errors)


def did_you_mean(word: str, choices, cutoff: float = 0.6) -> str:
    """A ' (did you mean ...?)' suffix naming the closest choices, or ''. A choice must be
    close both ways round (difflib's ratio is not symmetric): 'Permute' is not 'Parameter'."""
    import difflib

    close = [choice for choice in difflib.get_close_matches(word, list(choices), n=3,
                                                            cutoff=cutoff)
             if difflib.SequenceMatcher(None, word, choice).ratio() >= cutoff]
    if not close:
        lowered = {c.lower(): c for c in choices}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    if not close:
        return ""
    return " (did you mean " + " or ".join(f"'{c}'" for c in close) + "?)"
