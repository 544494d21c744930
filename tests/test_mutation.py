"""Mutated real files keep the promise for untrusted input: every outcome is a result or a
NetdefError (or a UsageError), never another exception, and quickly. Prototxts from the corpus
get token-level mutations (numbers pushed to extremes, fields dropped or duplicated, bytes
flipped); small caffemodels get byte-level ones. The default run is bounded; the slow variant
explores more."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netdef
from netdef.compiler.weights import read_weights

from .conftest import CORPUS, ROOT

FUZZ = ROOT.parent / "shared" / "fuzz-cases"
SEEDS = [CORPUS / "BVLC+caffe/models/bvlc_alexnet/deploy.prototxt",
         CORPUS / "shelhamer+fcn.berkeleyvision.org/voc-fcn8s/deploy.prototxt",
         FUZZ / "caffemodel_padded.prototxt", FUZZ / "split_single_top_forward.prototxt"]
EXTREMES = ["0", "-1", "1", "2147483647", "-2147483648", "4294967295", "9223372036854775807",
            "1e308", "-1e-308", "inf", "nan", "0x7fffffff", "1000000", "3"]
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?")


@st.composite
def mutated_prototxt(draw):
    text = SEEDS[draw(st.integers(0, len(SEEDS) - 1))].read_text()
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["number", "drop", "duplicate", "byte"]))
        if not text.strip():
            break
        if kind == "number":
            matches = list(NUMBER.finditer(text))
            if not matches:
                continue
            match = matches[draw(st.integers(0, len(matches) - 1))]
            text = text[:match.start()] + draw(st.sampled_from(EXTREMES)) + text[match.end():]
        elif kind in ("drop", "duplicate"):
            lines = text.splitlines()
            index = draw(st.integers(0, len(lines) - 1))
            lines[index:index + 1] = [] if kind == "drop" else [lines[index]] * 2
            text = "\n".join(lines)
        else:
            position = draw(st.integers(0, len(text) - 1))
            text = text[:position] + draw(st.sampled_from(list('{}":\\#\x00 \n-'))) + \
                text[position + 1:]
    return text


def keeps_the_promise(build) -> object:
    try:
        return build()
    except (netdef.NetdefError, netdef.UsageError):
        return None


def exercise_prototxt(text: str) -> None:
    problems = keeps_the_promise(lambda: netdef.check(text))
    if problems is None or any(not p.warning for p in problems):
        return
    keeps_the_promise(lambda: netdef.analyze(text))
    module = keeps_the_promise(lambda: netdef.load(text, device="meta"))
    if module is None:
        return
    # check passed and the meta build worked: a real build of a small net must work too
    if sum(p.numel() for p in module.parameters()) < 5_000_000:
        assert keeps_the_promise(lambda: netdef.load(text)) is not None


@st.composite
def mutated_caffemodel(draw):
    data = bytearray((FUZZ / "caffemodel_padded.caffemodel").read_bytes())
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        position = draw(st.integers(8100, len(data) - 1))  # into the layers, past the padding
        if kind == "flip":
            data[position] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[position:position + draw(st.integers(1, 64))]
        else:
            data[position:position] = bytes(draw(st.lists(st.integers(0, 255), max_size=8)))
    return bytes(data)


def exercise_caffemodel(data: bytes, path) -> None:
    path.write_bytes(data)
    keeps_the_promise(lambda: read_weights(path))
    module = keeps_the_promise(lambda: netdef.load(FUZZ / "caffemodel_padded.prototxt", path))
    if module is not None:
        with torch.no_grad():
            module(data=torch.zeros(1, 3, 8, 8))


FAST = settings(max_examples=60, deadline=5000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
THOROUGH = settings(max_examples=1500, deadline=10000, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@FAST
@given(mutated_prototxt())
def test_mutated_prototxts(text):
    exercise_prototxt(text)


@FAST
@given(mutated_caffemodel())
def test_mutated_caffemodels(tmp_path, data):
    exercise_caffemodel(data, tmp_path / "w.caffemodel")


@pytest.mark.slow
@THOROUGH
@given(mutated_prototxt())
def test_mutated_prototxts_thoroughly(text):
    exercise_prototxt(text)


@pytest.mark.slow
@THOROUGH
@given(mutated_caffemodel())
def test_mutated_caffemodels_thoroughly(tmp_path, data):
    exercise_caffemodel(data, tmp_path / "w.caffemodel")
