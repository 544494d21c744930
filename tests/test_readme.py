"""The README runs as written: every Python block, the "Try it" commands, and (slow, with the
real face detector from PyPI) the walkthrough's commands, whose quoted output must be what
netdef prints."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from .conftest import ROOT
from .test_detection import face_detector  # noqa: F401 (a fixture)

README = (ROOT / "README.md").read_text()


def blocks(language: str, after: str = "") -> list[str]:
    text = README[README.index(after):] if after else README
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def commands(block: str) -> list[list[str]]:
    lines = [line.split("#")[0].strip() for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("netdef ")]


@pytest.fixture
def example_dir(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    assert cli("example", "fcn8s", "-o", ".")[0] == 0
    return tmp_path


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_blocks_run(index, example_dir):
    result = subprocess.run([sys.executable, "-c", blocks("python")[index]], cwd=example_dir,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr


def test_try_it_commands_run(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    for arguments in commands(blocks("sh", "## Try it")[0]):
        code, out, err = cli(*arguments)
        assert code == 0, (arguments, err)
    assert (tmp_path / "fcn8s.svg").exists() and (tmp_path / "fcn8s-model" / "model.py").exists()


@pytest.mark.slow
def test_walkthrough_runs_and_prints_what_it_quotes(tmp_path, monkeypatch, cli, face_detector):
    import shutil

    from .test_detection import drawn_faces

    monkeypatch.chdir(tmp_path)
    for path in face_detector:
        shutil.copy(path, tmp_path / path.name)
    drawn_faces(tmp_path / "photo.jpg")
    (tmp_path / "labels.txt").write_text("background\nface\n")
    section = README[README.index("## Bring your own net"):README.index("## Commands")]
    outputs = {}
    for arguments in commands(blocks("sh", "## Bring your own net")[0]):
        code, out, err = cli(*arguments)
        assert code == 0, (arguments, err)
        outputs[arguments[0]] = outputs.get(arguments[0], "") + out
    assert "`deploy.prototxt: ok (113 layers in the TEST phase, 0 warnings)`" in section
    assert outputs["check"].strip() == "deploy.prototxt: ok (113 layers in the TEST phase, 0 warnings)"
    info_quote = re.search(r"```\n(blob .*?)```", section, re.S).group(1)
    for line in info_quote.splitlines():
        if line != "...":
            assert line in outputs["info"].splitlines(), line
    text = (tmp_path / "deploy.prototxt").read_text()
    typo = text.replace('type: "Convolution"', 'type: "Convolutoin"', 1)
    (tmp_path / "typo.prototxt").write_text(typo.replace("kernel_size: 3", "kernel_size: 0", 1))
    code, out, err = cli("check", "typo.prototxt")
    quoted = re.search(r"```\n(typo\.prototxt:43.*?)```", section, re.S).group(1)
    assert code == 1 and (out + err).splitlines() == quoted.splitlines()
    assert (tmp_path / "faces.png").exists() and (tmp_path / "face-model" / "model.py").exists()


@pytest.mark.slow
def test_the_wheel_ships_the_example_nets(tmp_path):
    """What a plain `pip install .` installs: the flagship prototxts are in the wheel."""
    import zipfile

    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                             "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    wheel = next(tmp_path.glob("netdef-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("fcn8s", "fcn8s_crfrnn", "region_net"):
        assert f"netdef/models/{name}.prototxt" in names
    assert "netdef/compiler/layers/priorbox.py" in names
    for page in ("view.html", "view.js", "view.css"):  # `netdef view` needs them installed
        assert f"netdef/page/{page}" in names


def test_make_demo_needs_nothing_outside_the_repository():
    makefile = (ROOT / "Makefile").read_text()
    demo = makefile[makefile.index("\ndemo:"):makefile.index("\ntest:")]
    variables = dict(re.findall(r"^(\w+) \?= (.+)$", makefile, re.M))
    for name in re.findall(r"\$\((\w+)\)", demo):
        demo = demo.replace(f"$({name})", variables.get(name, ""))
    assert "../" not in demo and "shared" not in demo
    for path in re.findall(r"models/\w+\.prototxt", demo):
        assert (ROOT / path).exists(), path
