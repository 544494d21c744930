from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
BROKEN = ROOT / "tests" / "broken"


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


@pytest.fixture(autouse=True)
def _free_tmp_path(request):
    """Parity tests write caffemodels of 0.5-1 GB, and pytest keeps every tmp_path until the
    run ends: 22.9 GB over the suite (measured), more than a CI disk has free. A passing
    test's folder goes when it ends; a failing one's stays to be looked at."""
    if "tmp_path" not in request.fixturenames:
        yield
        return
    folder = request.getfixturevalue("tmp_path")
    yield
    if not request.node.stash.get(FAILED, False):
        shutil.rmtree(folder, ignore_errors=True)


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


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite the golden files under tests/golden from the current code")


@pytest.fixture
def golden(request):
    """Compare text with tests/golden/NAME, or rewrite it under --update-golden."""
    update = request.config.getoption("--update-golden")

    def check(name: str, text: str) -> None:
        path = ROOT / "tests" / "golden" / name
        if update:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
        assert path.exists(), f"no golden file {path}; run pytest --update-golden"
        assert text == path.read_text(), f"{name} differs from its golden file (--update-golden)"

    return check


@pytest.fixture
def two_threads():
    """torch at 2 threads for the test (the thread chooser only acts above one)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
