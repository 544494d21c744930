"""netdef diff: the four cases the issue names, exit codes and JSON; facts checked by hand
from the files (layer lists, FCN crop offsets, AlexNet's conv1 output 55 = (227 - 11) / 4 + 1)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from netdef.compiler.weights import write_caffemodel

from .conftest import CORPUS, ROOT

ALEXNET = CORPUS / "BVLC+caffe" / "models" / "bvlc_alexnet"
V1_NET = CORPUS / "torrvision+crfasrnn" / "python-scripts" / "TVG_CRFRNN_COCO_VOC.prototxt"
LENET = CORPUS / "BVLC+caffe" / "examples" / "mnist" / "lenet.prototxt"


def test_train_val_against_deploy(cli):
    code, out, _ = cli("diff", ALEXNET / "train_val.prototxt", ALEXNET / "deploy.prototxt",
                       "--json")
    assert code == 1
    result = json.loads(out)
    assert not result["identical"]
    assert {(e["name"], e["type"]) for e in result["removed"]} == {
        ("accuracy", "Accuracy"), ("loss", "SoftmaxWithLoss")}
    assert result["added"] == [{"name": "prob", "type": "Softmax"}]
    data = next(e for e in result["changed"] if e["layer"] == "data")
    assert {"field": "type", "a": "Data", "b": "Input"} in data["fields"]
    conv1 = next(e for e in result["blobs"] if e["blob"] == "conv1")
    # the LMDB Data layer is not read (issue 20), so A's shapes stay unknown
    assert conv1["shape"] == [None, [10, 96, 55, 55]]
    assert conv1["rf"][0] == conv1["rf"][1] == {
        "data": {"size": [11, 11], "stride": [4, 4], "offset": [5, 5]}}


def test_v1_file_and_its_upgrade_are_identical(cli, tmp_path):
    upgraded = tmp_path / "upgraded.prototxt"
    assert cli("upgrade", V1_NET, "-o", upgraded)[0] == 0
    code, out, _ = cli("diff", V1_NET, upgraded, "--input", "data=1,3,64,64")
    assert code == 0, out
    assert out.splitlines()[0].endswith("(V1)") and out.splitlines()[1].endswith("(V2)")
    assert out.splitlines()[-1] == "identical apart from the format"


def test_fcn32s_against_fcn8s(cli):
    code, out, _ = cli("diff", ROOT / "models" / "fcn32s.prototxt",
                       ROOT / "models" / "fcn8s.prototxt")
    assert code == 1
    lines = out.splitlines()
    for layer in ("score_pool4 (Convolution)", "fuse_pool4 (Eltwise)", "score_pool3c (Crop)",
                  "upscore8 (Deconvolution)"):
        assert f"+ layer {layer}" in lines
    assert not any(line.startswith("- layer") for line in lines)  # FCN-8s only adds
    # FCN-32s' single 64x64 stride-32 upsampling is the first of FCN-8s' deconvolutions
    assert "@ layer upscore -> upscore2 (Deconvolution): renamed" in lines
    score = lines.index("@ layer score")
    assert lines[score + 1:score + 3] == ["-   crop_param.offset: [19]",
                                          "+   crop_param.offset: [31]"]


def _snapshot(path, conv1_weights):
    """A caffemodel, or a training snapshot as `netdef train` writes it (safetensors keyed
    layer.blob)."""
    blobs = [conv1_weights, np.zeros(20, np.float32)]
    if path.suffix == ".safetensors":
        save_file({f"conv1.{k}": blob for k, blob in enumerate(blobs)}, str(path))
        return
    with open(path, "wb") as out:
        write_caffemodel(out, [("conv1", "Convolution", blobs)])


@pytest.mark.parametrize("suffix", [".safetensors", ".caffemodel"])
def test_two_snapshots(cli, tmp_path, suffix):
    rng = np.random.default_rng(0)
    first = rng.uniform(-2, 2, (20, 1, 5, 5)).astype(np.float32)
    first[0, 0, 0, 0] = 4.0  # the largest magnitude, so max rel = max abs / 4
    second = first.copy()
    second[3, 0, 2, 2] += 0.5
    _snapshot(tmp_path / f"a{suffix}", first)
    _snapshot(tmp_path / f"b{suffix}", second)
    code, out, _ = cli("diff", LENET, LENET, "--weights-a", tmp_path / f"a{suffix}",
                       "--weights-b", tmp_path / f"b{suffix}", "--json")
    assert code == 1
    (change,) = json.loads(out)["weights"]
    assert (change["layer"], change["blob"]) == ("conv1", 0)
    assert abs(change["max_abs"] - 0.5) < 1e-6 and abs(change["max_rel"] - 0.125) < 1e-6
    code, out, _ = cli("diff", LENET, LENET, "--weights-a", tmp_path / f"a{suffix}",
                       "--weights-b", tmp_path / f"a{suffix}")
    assert (code, out.splitlines()[-1]) == (0, "identical")


def test_usage_and_unreadable_nets_exit_2(cli, tmp_path):
    assert cli("diff", LENET, LENET, "--weights-a", "x.caffemodel")[0] == 2
    code, _, err = cli("diff", LENET, tmp_path / "missing.prototxt")
    assert code == 2 and "cannot read" in err


def test_readme_quotes_the_fcn_diff_as_printed(cli, monkeypatch):
    monkeypatch.chdir(ROOT)
    readme = (ROOT / "README.md").read_text()
    command = "$ netdef diff models/fcn32s.prototxt models/fcn8s.prototxt\n"
    quoted = readme.split(command, 1)[1].split("```", 1)[0]
    code, out, _ = cli("diff", "models/fcn32s.prototxt", "models/fcn8s.prototxt")
    assert code == 1 and out == quoted


def test_a_missing_weights_file_exits_2(cli, tmp_path):
    code, _, err = cli("diff", LENET, LENET, "--weights-a", tmp_path / "none.caffemodel",
                       "--weights-b", tmp_path / "none.caffemodel")
    assert code == 2 and "none.caffemodel" in err and "Traceback" not in err


def test_control_characters_in_names_print_as_text(cli, tmp_path):
    text = LENET.read_text()
    renamed = tmp_path / "renamed.prototxt"
    renamed.write_text(text.replace('name: "ip2"', 'name: "ip2\\033[2J"', 1))
    code, out, _ = cli("diff", LENET, renamed)
    assert code == 1 and "\033" not in out and "ip2\\x1b[2J" in out
