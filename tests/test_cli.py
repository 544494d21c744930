from __future__ import annotations

import json
import subprocess
import sys

from .conftest import BROKEN, CORPUS

FCN8S = CORPUS / "shelhamer+fcn.berkeleyvision.org/voc-fcn8s/deploy.prototxt"


def test_info_json_contract(cli):
    code, out, _ = cli("info", FCN8S, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["inputs"] == {"data": [1, 3, 500, 500]}
    blobs = {blob["name"]: blob for blob in report["blobs"]}
    assert set(blobs["score"]) == {"name", "shape", "producer", "rf"}
    assert blobs["score"]["shape"] == [1, 21, 500, 500] and blobs["score"]["producer"] == "score"
    # reference-nets §C2: pool4 sits at stride 16, offset -91.5; fc6's 7x7 window gives 404
    assert blobs["pool4"]["rf"]["data"]["stride"] == [16, 16]
    assert blobs["pool4"]["rf"]["data"]["offset"] == [-91.5, -91.5]
    assert blobs["fc6"]["rf"]["data"]["size"] == [404, 404]
    assert blobs["pool4"]["shape"] == [1, 512, 44, 44]
    assert {"name", "inputs", "blobs", "warnings"} <= set(report)  # DESIGN §3's, and more:
    assert set(report) - {"name", "inputs", "blobs", "warnings"} == {"costs", "totals", "errors"}
    assert report["errors"] == [] and report["costs"]["fc6"]["params"] == 4096 * 512 * 49 + 4096


def test_info_table_folds_in_place_layers(cli):
    code, out, _ = cli("info", FCN8S)
    assert code == 0
    line = next(l for l in out.splitlines() if l.startswith("conv1_1 "))
    assert "1x64x698x698" in line and "relu1_1" in line


def test_usage_errors_exit_2(cli):
    assert cli("info", FCN8S, "--input", "nonsense")[0] == 2
    assert cli("info", FCN8S, "--input", "datum=1,3,8,8")[0] == 2
    assert cli("frobnicate")[0] == 2


def test_debug_shows_the_traceback(cli):
    code, _, err = cli("--debug", "check", BROKEN / "syntax_missing_brace.prototxt")
    assert code == 1 and "Traceback" in err


def test_python_m_entry_point_and_all_problems_collected(tmp_path):
    net = tmp_path / "three.prototxt"
    net.write_text('input: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
                   'layer { name: "a" type: "Convolutoin" bottom: "data" top: "a" }\n'
                   'layer { name: "b" type: "ReLU" bottom: "dta" top: "b" }\n'
                   'layer { name: "c" type: "Pooling" bottom: "data" top: "c" '
                   'pooling_param { kernel_size: 2 stride: 0 } }\n')
    result = subprocess.run([sys.executable, "-m", "netdef", "check", str(net)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    for line in (f"{net}:3:", f"{net}:4:", f"{net}:5:"):
        assert line in result.stdout
    assert "did you mean 'Convolution'" in result.stdout
    assert "did you mean 'data'" in result.stdout


def test_layers_lists_every_rule(cli):
    code, out, _ = cli("layers")
    names = {line.split()[0] for line in out.splitlines()}
    assert {"Convolution", "Crop", "MultiStageMeanfield", "Interp", "ROIPooling", "Upsample"} <= names
    assert len(names) >= 60


def test_info_table_shows_rf_stride_offset(cli):
    code, out, _ = cli("info", FCN8S)
    header, *rows = out.splitlines()
    assert header.split()[:5] == ["blob", "shape", "rf", "stride", "offset"]
    pool4 = next(row.split() for row in rows if row.startswith("pool4 "))
    assert pool4[1:5] == ["1x512x44x44", "100", "16", "-91.5"]
    fc8 = next(row.split() for row in rows if row.startswith("fc7 "))
    assert fc8[2:5] == ["404", "32", "12.5"]


def test_upgrade_solve_crops_writes_offsets(cli, tmp_path):
    from google.protobuf import text_format

    from netdef.proto import netdef_pb2 as pb

    source = CORPUS / "torrvision+crfasrnn/python-scripts/TVG_CRFRNN_new_deploy.prototxt"
    target = tmp_path / "solved.prototxt"
    code, out, _ = cli("upgrade", "--solve-crops", source, "-o", target)
    assert code == 0 and out.count("wrote offset") == 3
    net = text_format.Parse(target.read_text(), pb.NetParameter())
    crops = [layer.crop_param for layer in net.layer if layer.type == "Crop"]
    assert [list(c.offset) for c in crops] == [[5], [9], [31]] and all(c.axis == 2 for c in crops)
    code, out, _ = cli("check", target)
    assert code == 0 and out.endswith(": ok (51 layers in the TEST phase, 0 warnings)\n")
    assert out.count("\n") == 1  # nothing left to solve or to warn about


def test_literal_crops_option(cli):
    source = CORPUS / "torrvision+crfasrnn/python-scripts/TVG_CRFRNN_new_deploy.prototxt"
    _, solved, _ = cli("check", source)
    _, literal, _ = cli("check", source, "--literal-crops")
    assert solved.count("solved from the coordinate maps") == 3
    assert "solved from" not in literal and "not aligned" in literal


def test_file_system_errors_exit_1_without_traceback(cli, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, _, err = cli("compile", FCN8S, "-o", blocker / "inside")
    assert code == 1 and "netdef: error:" in err and "Traceback" not in err
