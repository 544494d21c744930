"""What a newcomer sees in the first hour: every command says what happened, errors say
where, inputs are taken as users have them (issue: the first hour)."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from .conftest import ROOT

FCN8S = ROOT / "models" / "fcn8s.prototxt"
GREY = """input: "data" input_shape { dim: 1 dim: 1 dim: 8 dim: 8 }
layer { name: "c" type: "Convolution" bottom: "data" top: "c"
        convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "gaussian" } } }
"""


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_check_says_ok(cli):
    code, out, err = cli("check", FCN8S)
    assert code == 0 and out.strip().endswith("ok (49 layers in the TEST phase, 0 warnings)")


def test_syntax_and_strict_errors_get_the_summary(tmp_path, cli):
    unclosed = write(tmp_path, "unclosed.prototxt", 'name: "x"\nlayer {\n  name: "a"\n')
    code, out, err = cli("check", unclosed)
    assert code == 1 and err.strip() == f"{unclosed}: 1 error(s)"
    assert f"{unclosed}:2: missing '}}': 'layer' opened here is never closed" in out
    strict = write(tmp_path, "strict.prototxt",
                   'layer { name: "a" type: "ReLU" bottom: "x" top: "x" foo: 1 }\n'
                   'input: "x" input_shape { dim: 1 }\n')
    code, out, err = cli("check", strict, "--strict")
    assert code == 1 and "unknown field 'foo'" in out and "1 error(s)" in err


def test_check_and_info_json_carry_the_errors(tmp_path, cli):
    broken = write(tmp_path, "broken.prototxt", GREY + 'layer { name: "r" type: "ReLU" '
                   'bottom: "nope" top: "r" }\n')
    code, out, err = cli("check", broken, "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and "bottom 'nope'" in report["errors"][0]
    code, out, err = cli("info", broken, "--json")
    report = json.loads(out)
    assert code == 1 and "bottom 'nope'" in report["errors"][0]
    assert {blob["name"]: blob["shape"] for blob in report["blobs"]}["c"] == [1, 2, 6, 6]
    code, out, err = cli("check", FCN8S, "--json")
    assert code == 0 and json.loads(out)["errors"] == []


def test_a_blob_missing_in_this_phase_names_the_phase(tmp_path, cli):
    text = ('layer { name: "data" type: "Input" top: "data" include { phase: TRAIN } '
            'input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }\n'
            'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n')
    code, out, err = cli("check", write(tmp_path, "phase.prototxt", text))
    assert code == 1 and "in the TEST phase (layer 'data' makes it" in out


def test_info_says_which_input_sizes_unknown_shapes(tmp_path, cli):
    text = ('layer { name: "data" type: "Python" top: "data" python_param { module: "m" '
            'layer: "L" } }\nlayer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n')
    code, out, err = cli("info", write(tmp_path, "python.prototxt", text))
    assert code == 0 and "--input data=N,C,H,W" in err


def test_grey_images_for_one_channel_inputs(tmp_path, cli):
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 255, (8, 8, 3), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    net = write(tmp_path, "grey.prototxt", GREY)
    code, out, err = cli("run", net, "--input", f"data={tmp_path / 'in.png'}", "--out",
                         tmp_path / "o.npz", "--out-blob", "data")
    assert code == 0, err
    grey = np.load(tmp_path / "o.npz")["data"]
    expected = np.asarray(Image.fromarray(rgb).convert("L"), np.float32)
    assert grey.shape == (1, 1, 8, 8) and np.array_equal(grey[0, 0], expected)
    assert "outputs come from the prototxt's filler values" in err


def test_an_image_with_other_channels_is_a_clear_error(tmp_path, cli):
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in.png")
    net = write(tmp_path, "four.prototxt", GREY.replace("dim: 1 dim: 8", "dim: 4 dim: 8"))
    code, out, err = cli("run", net, "--input", f"data={tmp_path / 'in.png'}")
    assert code == 2 and "is a 3-channel image, but the net's input 'data' takes 4" in err


def test_convert_given_a_prototxt_says_so(tmp_path, cli):
    code, out, err = cli("convert", FCN8S, "-o", tmp_path / "w.safetensors")
    assert code == 1 and "this is protobuf text (a prototxt), not a binary .caffemodel" in err


def test_onnx_without_the_package_fails_before_writing(tmp_path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    code, out, err = cli("compile", FCN8S, "-o", tmp_path / "out", "--format", "onnx",
                         "--input", "data=1,3,64,64")
    assert code == 2 and "needs the onnx and onnxscript packages" in err
    assert not (tmp_path / "out").exists()


def test_version(cli, capsys):
    with pytest.raises(SystemExit) as stop:
        cli("--version")
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("netdef ")


def test_info_counts_parameters_flops_and_memory(cli):
    """FCN-8s at 500 x 500: the module's own parameter count, the 362 GFLOP the speed issue
    states, and every blob in float32."""
    import netdef
    from netdef.compiler.analysis import analyze

    report = analyze(FCN8S)
    module = netdef.load(FCN8S, device="meta")
    assert report.totals()["params"] == sum(p.numel() for p in module.parameters())
    assert round(report.totals()["flops"] / 1e9) == 362
    assert report.blob("conv1_1").bytes == 4 * 64 * 698 * 698
    assert report.blob("conv1_1").params == 64 * 3 * 9 + 64
    code, out, err = cli("info", FCN8S)
    header, *rows = out.splitlines()
    assert header.split()[5:8] == ["params", "FLOPs", "memory"]
    assert rows[-1].split() == ["total", "134M", "362G", "649MB"]
    code, out, err = cli("info", FCN8S, "--json")
    assert json.loads(out)["totals"]["params"] == report.totals()["params"]


@pytest.mark.parametrize("given,expected", [(None, "10000"), ("500", "500")])
def test_openmp_threads_spin_briefly_unless_the_user_says(given, expected):
    """netdef imported before torch shortens libgomp's spin at barriers (busy machines), and
    leaves a value the user set alone."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    if given is not None:
        env["GOMP_SPINCOUNT"] = given
    script = "import os, netdef, torch; print(os.environ['GOMP_SPINCOUNT'])"
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == expected


def test_the_benchmark_zoo_nets_have_their_published_sizes():
    """bench/nets.py's generated VGG-16 and SqueezeNet 1.1 have the published parameter counts
    (138,357,544 and 1,235,496); MobileNet and DenseNet-121 check cleanly."""
    sys.path.insert(0, str(ROOT / "bench"))
    import nets
    from netdef.compiler.analysis import analyze

    assert analyze(nets.vgg16_net()).totals()["params"] == 138_357_544
    assert analyze(nets.squeezenet_net()).totals()["params"] == 1_235_496
    for text in (nets.mobilenet_net(), nets.densenet_net()):
        assert analyze(text).blob("prob").shape == (1, 1000)
