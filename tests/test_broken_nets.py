"""Every file in tests/broken/ is wrong in one way. Each says which error class it
must raise (`# expect:`) and marks the faulty line with `#!`; netdef must report
that class at that line, and the CLI must exit 1 with no traceback."""
from __future__ import annotations

import re

import pytest

import netdef
from netdef.errors import NetdefError

from .conftest import BROKEN

BROKEN_FILES = sorted(BROKEN.glob("*.prototxt"))


def expectations(path):
    text = path.read_text()
    kind = getattr(netdef, re.search(r"^# expect: (\w+)", text, re.M).group(1))
    strict = "# strict" in text
    marked = [number for number, line in enumerate(text.splitlines(), start=1) if "#!" in line]
    assert len(marked) == 1, f"{path.name}: mark exactly one line with #!"
    return kind, strict, marked[0]


def problems_of(path, strict):
    try:
        return netdef.check(path, strict=strict)
    except NetdefError as exc:
        return exc.problems


def test_there_are_at_least_forty_broken_nets():
    assert len(BROKEN_FILES) >= 40


@pytest.mark.parametrize("path", BROKEN_FILES, ids=lambda p: p.stem)
def test_error_class_and_line(path):
    kind, strict, line = expectations(path)
    errors = [p for p in problems_of(path, strict) if not p.warning]
    found = [(p.kind.__name__, p.line) for p in errors]
    assert any(p.kind is kind and p.line == line for p in errors), \
        f"expected {kind.__name__} at line {line}, got {found}: " + "; ".join(p.format() for p in errors)


@pytest.mark.parametrize("path", BROKEN_FILES, ids=lambda p: p.stem)
def test_cli_exits_1_with_location_and_no_traceback(path, cli):
    kind, strict, line = expectations(path)
    args = ["check", path] + (["--strict"] if strict else [])
    code, out, err = cli(*args)
    assert code == 1
    assert "Traceback" not in out + err
    assert f"{path}:{line}:" in out + err
