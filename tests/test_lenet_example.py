"""examples/lenet: BVLC's LeNet recipe, edited only in its paths, trains on real handwritten
digits (scikit-learn's, offline) from LMDBs that `netdef convert-imageset` writes."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from .conftest import CORPUS, ROOT

EXAMPLE = ROOT / "examples" / "lenet"
BVLC_NET = CORPUS / "BVLC+caffe" / "examples" / "mnist" / "lenet_train_test.prototxt"


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_the_net_is_bvlcs_apart_from_its_database_paths(cli, phase):
    code, out, _ = cli("diff", BVLC_NET, EXAMPLE / "lenet_train_test.prototxt", "--phase", phase)
    changes = [line for line in out.splitlines() if line[:1] in "+-@" and line[:3] not in ("---", "+++")]
    split = phase.lower()
    assert code == 1 and changes == [
        "@ layer mnist", f"-   data_param.source: examples/mnist/mnist_{split}_lmdb",
        f"+   data_param.source: work/digits_{split}_lmdb"]


@pytest.mark.slow
def test_lenet_learns_the_digits(tmp_path):
    for name in ("lenet.py", "lenet_train_test.prototxt", "lenet_solver.prototxt"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    run = subprocess.run([sys.executable, str(tmp_path / "lenet.py"), "--max-iter", "500"],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-2000:]
    log = run.stdout + run.stderr
    assert "work/digits_train_lmdb: 1500 records" in log and "297 records" in log
    accuracies = [float(value) for value in re.findall(r"output #0: accuracy = ([0-9.]+)", log)]
    assert accuracies[0] < 0.3 and accuracies[-1] >= 0.9, accuracies  # 500 iterations of 10,000
