from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
BROKEN = ROOT / "tests" / "broken"


def corpus_files() -> list[Path]:
    files = sorted(CORPUS.rglob("*.prototxt"))
    assert files, f"no corpus at {CORPUS}: ../shared must sit beside the project"
    return files


def corpus_id(path: Path) -> str:
    return str(path.relative_to(CORPUS))


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: returns (exit code, stdout, stderr)."""
    from netdef.cli import main

    def run(*args):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run
