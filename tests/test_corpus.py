"""Every real prototxt in ../shared/corpus checks cleanly: TEST phase, and TRAIN for train/val files."""
from __future__ import annotations

import pytest

from .conftest import corpus_files, corpus_id

FILES = corpus_files()
TRAIN_FILES = [f for f in FILES if any(word in f.name for word in ("train", "val"))]


@pytest.mark.parametrize("path", FILES, ids=corpus_id)
def test_check_test_phase(path, cli):
    code, out, err = cli("check", path, "--phase", "TEST")
    assert code == 0, out + err
    assert "error" not in (out + err).lower().replace("error(s)", "")


@pytest.mark.parametrize("path", TRAIN_FILES, ids=corpus_id)
def test_check_train_phase(path, cli):
    code, out, err = cli("check", path, "--phase", "TRAIN")
    assert code == 0, out + err


def test_corpus_has_legacy_formats():
    from netdef.compiler.parse import parse_net

    formats = {parse_net(path).original_format for path in FILES}
    assert {"V1", "V2"} <= formats
