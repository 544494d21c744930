"""FCN-32s and FCN-8s from models/ learn on a synthetic segmentation folder (`netdef train`)."""
import csv

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT


def scenes(root, count=4, size=64, seed=0):
    """Dark noisy images with a red square (class 1) and a blue one (class 2); the top row
    of each label is 255 (ignored), as VOC marks object borders."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for index in range(count):
        image = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
        label = np.zeros((size, size), np.uint8)
        for cls, colour in ((1, (220, 30, 30)), (2, (30, 30, 220))):
            top, left = rng.integers(0, size - 24, 2)
            height, width = rng.integers(12, 24, 2)
            image[top:top + height, left:left + width] = colour
            label[top:top + height, left:left + width] = cls
        label[0] = 255
        Image.fromarray(image).save(root / "images" / f"{index:03d}.png")
        picture = Image.fromarray(label, "P")
        picture.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
        picture.save(root / "labels" / f"{index:03d}.png")


@pytest.mark.slow
@pytest.mark.parametrize("model, rate, steps", [("fcn32s", 1e-6, 6), ("fcn8s", 2e-7, 8)])
def test_fcn_loss_falls(model, rate, steps, tmp_path, monkeypatch, cli):
    scenes(tmp_path / "seg")
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "solver.prototxt").write_text(f"""net: "{ROOT / 'models' / (model + '.prototxt')}"
base_lr: {rate}
lr_policy: "fixed"
momentum: 0.9
weight_decay: 0.0005
max_iter: {steps}
snapshot_after_train: false
snapshot_prefix: "out/{model}"
""")
    code, _, err = cli("train", "solver.prototxt", "--data", "seg", "--no-progress")
    assert code == 0, err
    with open(f"out/{model}_train.csv") as handle:
        losses = [float(row["loss"]) for row in csv.DictReader(handle)]
    assert len(losses) == steps
    # unnormalised (sum over 63 x 64 labelled pixels): starts near ln(21) per pixel
    assert losses[0] == pytest.approx(63 * 64 * np.log(21), rel=0.1)
    assert np.mean(losses[-2:]) < 0.6 * losses[0], losses
