"""Every reproducer in ../shared/fuzz-cases/ (README there), as a regression test of the promise
for untrusted files: a NetdefError located as `path:line: layer 'name' (Type): message` (CLI: exit
1, no traceback), or correct output where the file is valid Caffe; quickly, in memory near the
input's size, running no code from the file and writing nowhere the user did not ask."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.dom.minidom
from pathlib import Path

import numpy as np
import pytest
import torch

import netdef
from netdef.compiler.weights import read_weights

from .conftest import ROOT

FUZZ = ROOT.parent / "shared" / "fuzz-cases"


@pytest.fixture
def cmd(cli):
    """The CLI in-process: (exit code, everything it printed)."""
    def run(*args):
        code, out, err = cli(*args)
        return code, out + err
    return run


def case(name: str) -> Path:
    path = FUZZ / name
    assert path.exists(), f"missing reproducer {path}"
    return path


def assert_clean_failure(code: int, err: str, *located: str) -> None:
    """Exit 1 with a located message, no traceback and no internal error."""
    assert code == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    for text in located:
        assert text in err, err


# ------------------------------------------------------------ errors at check
CHECK_ERRORS = {  # file -> (line, layer, type, words of the message)
    "hex_float_overflow.prototxt": (2, "r", "ReLU", "out of range"),
    "dummydata_negative_dim.prototxt": (1, "d", "DummyData", "negative"),
    "conv_input_int64max_load.prototxt": (1, "input", "Input", "2^31 - 1"),
    "innerproduct_inputs_overflow_load.prototxt": (2, "conv", "Convolution", "2^31 - 1"),
    "embed_huge_load.prototxt": (2, "e", "Embed", "learned blob 0"),
    "log_base_one_load.prototxt": (2, "log", "Log", "base 1"),
    "bn_on_1d_blob_load.prototxt": (2, "bn", "BN", "channel axis"),
    "interp_zoom_hang.prototxt": (2, "up", "Interp", "2^31 - 1"),
    "deconv_kernel_hang.prototxt": (2, "d", "Deconvolution", "2^31 - 1"),
    "upsample_scale_hang.prototxt": (2, "up", "Upsample", "exactly 2 bottoms"),
}


@pytest.mark.parametrize("name", sorted(CHECK_ERRORS))
def test_check_reports_a_located_error(name, cmd, tmp_path):
    path = case(name)
    line, layer, kind, words = CHECK_ERRORS[name]
    located = f"{path}:{line}: layer '{layer}' ({kind}):"
    for command in (["check", path], ["info", path], ["draw", path, "-o", tmp_path / "n.svg"],
                    ["compile", path, "-o", tmp_path / "out"]):
        code, err = cmd(*command)
        assert_clean_failure(code, err, located, words)
    for build in (lambda: netdef.load(path), lambda: netdef.load(path, device="meta")):
        with pytest.raises(netdef.NetdefError):
            build()
    assert not (tmp_path / "out" / "model.py").exists()


def test_binary_prototxt_with_non_utf8_name(cmd, tmp_path):
    path = case("binary_prototxt_non_utf8_name.prototxt")
    for command in (["check", path], ["info", path], ["draw", path, "-o", tmp_path / "n.svg"]):
        code, err = cmd(*command)
        assert_clean_failure(code, err, f"{path}:", "layer[1].name", "not valid UTF-8")
    with pytest.raises(netdef.PrototxtSyntaxError):
        netdef.load(path)


def test_infogain_source_that_is_a_device(cmd):
    path = case("infogain_source_dev_zero.prototxt")
    for device in ("cpu", "meta"):
        with pytest.raises(netdef.LoweringError, match="not a regular file"):
            netdef.load(path, device=device)
    code, err = cmd("run", path, "--input", f"data={FUZZ / 'python_layer_probe' / 'x.npy'}")
    assert_clean_failure(code, err, f"{path}:3: layer 'l' (InfogainLoss):")


# ------------------------------------------------------------ valid Caffe: correct output
def test_split_and_slice_with_one_top_forward():
    x = torch.randn(1, 3, 8, 8)
    split = netdef.load(case("split_single_top_forward.prototxt"))
    direct = netdef.load(case("split_single_top_forward.prototxt").read_text().replace(
        'layer { name: "split" type: "Split" bottom: "data" top: "s" }', "").replace(
        'bottom: "s"', 'bottom: "data"'))
    direct.load_state_dict(split.state_dict())
    with torch.no_grad():
        assert torch.equal(split(data=x)["c"], direct(data=x)["c"])
    sliced = netdef.load('input: "data" input_shape { dim: 1 dim: 3 dim: 2 dim: 2 }\n'
                         'layer { name: "s" type: "Slice" bottom: "data" top: "a" }\n'
                         'layer { name: "r" type: "ReLU" bottom: "a" top: "r" }')
    assert torch.equal(sliced(data=x[..., :2, :2])["r"], x[..., :2, :2].relu())


def test_input_name_that_is_not_an_identifier(cmd, tmp_path):
    path = case("run_input_name_not_identifier.prototxt")
    x = torch.from_numpy(np.load(case("run_input_name_not_identifier.npy")))
    module = netdef.load(path)
    with torch.no_grad():
        ours = module(**{"im-data": x})["c"]
        reference = torch.nn.functional.conv2d(x, module.conv.weight, module.conv.bias)
    assert torch.equal(ours, reference)
    code, err = cmd("run", path, "--input", f"im-data={case('run_input_name_not_identifier.npy')}",
                         "--out", tmp_path / "y.npz")
    assert code == 0, err
    assert np.array_equal(np.load(tmp_path / "y.npz")["c"], reference.numpy())


def test_pooling_with_a_huge_stride_allocates_near_its_output():
    script = f"""
import resource, torch, netdef
m = netdef.load({str(case('pooling_big_stride_forward_alloc.prototxt'))!r})
x = torch.randn(1, 1, 8, 8)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
y = m(data=x)["pool"]
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
assert y.shape == (1, 1, 2, 2), y.shape
assert y[0, 0, 0, 0] == x[0, 0, :3, :3].max()  # Caffe: the one window inside the input
assert (y.flatten()[1:] == -3.4028234663852886e38).all()  # windows past it keep -FLT_MAX
print(grown)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) < 50_000  # KiB: nowhere near the 40 GB of old


# ------------------------------------------------------------ generated code
def run_compiled(folder: Path, feeds: dict, tmp_path: Path) -> dict:
    """Import model.py in a fresh interpreter, run it on the feeds, return its outputs."""
    np.savez(tmp_path / "feeds.npz", **feeds)
    script = ("import sys, numpy as np, torch; sys.path.insert(0, sys.argv[1]); import model\n"
              "feeds = {k: torch.from_numpy(v) for k, v in np.load(sys.argv[2]).items()}\n"
              "with torch.no_grad(): out = model.load()(**feeds)\n"
              "np.savez(sys.argv[3], **{k: v.numpy() for k, v in out.items()})\n")
    subprocess.run([sys.executable, "-c", script, str(folder), str(tmp_path / "feeds.npz"),
                    str(tmp_path / "out.npz")], check=True, cwd=tmp_path, timeout=300)
    return dict(np.load(tmp_path / "out.npz"))


def test_code_in_names_never_runs(cmd, tmp_path):
    markers = [Path("/tmp/netdef_injected_by_name"), Path("/tmp/netdef_injected_by_layer")]
    for marker in markers:
        marker.unlink(missing_ok=True)
    before = set(tmp_path.iterdir())
    code, err = cmd("compile", case("compile_code_injection.prototxt"), "-o", tmp_path / "out")
    assert code == 0, err
    feeds = {"data": np.ones((1, 1, 8, 8), np.float32)}
    outputs = run_compiled(tmp_path / "out", feeds, tmp_path)
    assert list(outputs) == ["c"]
    assert not any(marker.exists() for marker in markers), "code from the prototxt ran"
    created = set(tmp_path.iterdir()) - before
    assert {path.name for path in created} == {"out", "feeds.npz", "out.npz"}
    source = (tmp_path / "out" / "model.py").read_text()
    assert "\nopen(" not in source  # the names are inside string literals only


@pytest.mark.parametrize("name, feeds", [
    ("compile_inf_nan_param.prototxt", {"data": (1, 1, 8, 8)}),
    ("compile_non_identifier_layer_name.prototxt", {"data": (1, 1, 8, 8)}),
    ("svg_escaping_probe.prototxt", {"da<script>alert(1)</script>ta": (1, 3, 8, 8)}),
    ("run_input_name_not_identifier.prototxt", {"im-data": (1, 3, 8, 8)}),
])
def test_compiled_model_imports_and_matches_load(name, feeds, cmd, tmp_path):
    path = case(name)
    code, err = cmd("compile", path, "-o", tmp_path / "out")
    assert code == 0, err
    arrays = {k: np.random.default_rng(0).standard_normal(s).astype(np.float32)
              for k, s in feeds.items()}
    theirs = run_compiled(tmp_path / "out", arrays, tmp_path)
    module = netdef.load(path)
    with torch.no_grad():
        ours = module(**{k: torch.from_numpy(v) for k, v in arrays.items()})
    assert list(theirs) == list(ours)
    for key, value in ours.items():
        np.testing.assert_array_equal(theirs[key], value.numpy())


def test_compile_refuses_a_model_py_that_does_not_import(monkeypatch, tmp_path):
    from netdef.compiler import codegen

    monkeypatch.setattr(codegen, "model_source", lambda *args: "this is not python\n")
    with pytest.raises(netdef.LoweringError, match="does not import"):
        codegen.compile_net(case("split_single_top_forward.prototxt"), tmp_path / "out")
    assert not (tmp_path / "out" / "weights.safetensors").exists()


# ------------------------------------------------------------ drawing
def test_control_characters_and_markup_in_names_draw(cmd, tmp_path):
    for name in ("draw_control_char_in_name.prototxt", "svg_escaping_probe.prototxt"):
        svg = tmp_path / f"{name}.svg"
        code, err = cmd("draw", case(name), "-o", svg)
        assert code == 0, err
        document = xml.dom.minidom.parse(str(svg))  # well-formed XML
        assert not document.getElementsByTagName("script")
        assert "<script>" not in svg.read_text()
    code, err = cmd("compile", case("draw_control_char_in_name.prototxt"), "-o",
                         tmp_path / "out")
    assert code == 0 and "skipped" not in err, err
    assert "ctl\\x01" in (tmp_path / "out" / "graph.svg").read_text()


# ------------------------------------------------------------ weights
def test_caffemodel_dims_whose_product_overflows(cmd, tmp_path):
    weights = case("caffemodel_shape_product_overflow.caffemodel")
    code, err = cmd("convert", weights, "-o", tmp_path / "w.safetensors")
    assert_clean_failure(code, err, "layer 'conv1' (Convolution), blob 0")
    with pytest.raises(netdef.WeightError):
        netdef.load(case("caffemodel_shape_product_overflow.prototxt"), weights)
    assert not (tmp_path / "w.safetensors").exists()


@pytest.mark.parametrize("name", ["caffemodel_empty_blob", "caffemodel_empty_2d_blob",
                                  "caffemodel_empty_layer_name"])
def test_convert_writes_what_netdef_reads_back(name, cmd, tmp_path):
    weights = case(f"{name}.caffemodel")
    out = tmp_path / "w.safetensors"
    code, err = cmd("convert", weights, "-o", out)
    assert code == 0, err
    original, converted = read_weights(weights), read_weights(out)
    assert [layer.name for layer in converted] == [layer.name for layer in original]
    for a, b in zip(original, converted):
        assert [blob.shape for blob in a.blobs] == [blob.shape for blob in b.blobs]


def test_empty_blob_against_its_net_is_a_weight_error(cmd):
    net = case("caffemodel_empty_blob.prototxt")
    code, err = cmd("convert", case("caffemodel_empty_blob.caffemodel"), "--net", net,
                       "-o", "/nonexistent/never-written.safetensors")
    assert_clean_failure(code, err, f"{net}:2: layer 'conv1' (Convolution): blob 0")


def test_convert_onto_its_input_is_refused_and_loses_nothing(cmd, tmp_path):
    weights = tmp_path / "w.caffemodel"
    shutil.copy(case("caffemodel_padded.caffemodel"), weights)
    before = weights.read_bytes()
    code, err = cmd("convert", weights, "-o", weights)
    assert code == 2 and "is the input" in err and "Traceback" not in err
    code, err = cmd("convert", weights, "--net", case("caffemodel_padded.prototxt"),
                       "-o", weights)
    assert code == 2 and "is the input" in err
    assert weights.read_bytes() == before


def test_truncated_caffemodel_names_the_layer_and_blob(tmp_path):
    data = case("caffemodel_padded.caffemodel").read_bytes()
    net = case("caffemodel_padded.prototxt")
    named = 0
    for cut in range(8200, len(data), 97):  # past the 8 KB unknown field, into the layers
        path = tmp_path / "cut.caffemodel"
        path.write_bytes(data[:cut])
        with pytest.raises(netdef.WeightError) as caught:
            netdef.load(net, path)
        message = str(caught.value)
        assert "truncated" in message or "layer '" in message, message
        named += "layer '" in message and "blob" in message
    assert named > 5


# ------------------------------------------------------------ training
def test_corrupt_mean_file_is_a_data_error(cmd, tmp_path, monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(case("train_corrupt_mean_file"), work)
    monkeypatch.chdir(work)
    code, err = cmd("train", "solver.prototxt", "--no-progress")
    assert_clean_failure(code, err, "net.prototxt:1: layer 'data' (ImageData):", "mean_file")


def test_snapshot_prefix_cannot_make_folders_outside(cmd, tmp_path, monkeypatch):
    work = tmp_path / "a" / "b" / "escape"
    shutil.copytree(case("solver_snapshot_escape"), work)
    monkeypatch.chdir(work)
    code, err = cmd("train", "sub/solver.prototxt", "--no-progress")
    assert_clean_failure(code, err, "snapshot_prefix", "does not exist")
    assert not (tmp_path / "a" / "escaped").exists()
    # a folder that exists is used, relative to the working directory as in Caffe
    (tmp_path / "a" / "escaped" / "deep").mkdir(parents=True)
    code, err = cmd("train", "sub/solver.prototxt", "--no-progress")
    assert code == 0, err
    assert (tmp_path / "a" / "escaped" / "deep" / "snap_iter_1.safetensors").exists()
    code, err = cmd("train", "sub/solver.prototxt", "--no-progress")
    assert code == 0 and "Overwriting the existing" in err
    code, err = cmd("train", "sub/solver.prototxt", "--no-progress",
                       "--snapshot-prefix", "mine")
    assert code == 0, err
    assert (work / "mine_iter_1.safetensors").exists()


# ------------------------------------------------------------ Python layers stay unimported
def test_python_layers_never_run_without_the_flag(cmd, tmp_path, monkeypatch):
    work = tmp_path / "probe"
    shutil.copytree(case("python_layer_probe"), work)
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    x = work / "x.npy"
    for name in ("pydata", "pymid", "pyvoc"):
        net = f"{name}.prototxt"
        for command in (["check", net], ["check", net, "--phase", "TRAIN"],
                        ["info", net, "--input", "data=1,3,8,8"], ["draw", net, "-o", "n.svg"],
                        ["compile", net, "-o", f"out_{name}", "--input", "data=1,3,8,8"],
                        ["run", net, "--input", f"data={x}", "--out", f"o_{name}.npz"]):
            code, err = cmd(*command)
            assert code in (0, 1) and "Traceback" not in err and "internal error" not in err, err
        for build in (lambda: netdef.load(net, inputs={"data": (1, 3, 8, 8)}),
                      lambda: netdef.load(net, device="meta", inputs={"data": (1, 3, 8, 8)})):
            try:
                build()
            except netdef.NetdefError:
                pass
    code, err = cmd("train", "solver.prototxt", "--max-iter", "1", "--no-progress")
    assert code == 1 and "allow_python_layers" in err, err
    # FCN's VOC layer is served built in (no import); here its folder does not exist
    code, err = cmd("train", "solver_voc.prototxt", "--max-iter", "1", "--no-progress")
    assert_clean_failure(code, err, "layer 'data' (Python)", "/nonexistent")
    assert not list(work.glob("MARKER_*")), "a Python layer module was imported"
    assert "evilmod" not in sys.modules and "voc_layers" not in sys.modules


# ------------------------------------------------------------ the command line itself
def test_cli_promises(cmd, tmp_path):
    net = case("split_single_top_forward.prototxt")
    code, err = cmd("check", net, "--debug")  # --debug after the command
    assert code == 0, err
    code, err = cmd("check", tmp_path / "missing.prototxt")
    assert code == 1 and "cannot read" in err and "Traceback" not in err
    code, err = cmd("check", net, "--no-such-option")
    assert code == 2
    code, err = cmd("run", net, "--input", f"data={tmp_path / 'missing.npy'}")
    assert code == 1 and "cannot read" in err
    if not torch.cuda.is_available():
        np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
        code, err = cmd("run", net, "--input", f"data={tmp_path / 'x.npy'}", "--device", "cuda")
        assert code == 2 and "no CUDA device" in err and "Traceback" not in err


@pytest.mark.slow
def test_run_fast_from_the_command_line(cmd, tmp_path):
    net = case("split_single_top_forward.prototxt")
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    for extra in ([], ["--fast"]):
        code, err = cmd("run", net, "--input", f"data={tmp_path / 'x.npy'}", *extra,
                           "--out", tmp_path / f"y{len(extra)}.npz")
        assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "y1.npz")["c"], np.load(tmp_path / "y0.npz")["c"],
                               rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------ size scaling (generated)
SCALING = {
    "split_20000_tops": """
tops = " ".join(f'top: "t{i}"' for i in range(20000))
text = f'input: "data" input_shape {{ dim: 1 dim: 3 dim: 4 dim: 4 }}\\nlayer {{ name: "s" type: "Split" bottom: "data" {tops} }}\\n'
""",
    "reverse_2000_layers": """
layers = [f'layer {{ name: "r{i}" type: "ReLU" bottom: "b{i}" top: "b{i + 1}" }}' for i in range(2000)]
text = 'input: "b0" input_shape { dim: 1 dim: 3 dim: 4 dim: 4 }\\n' + "\\n".join(reversed(layers))
""",
    "missing_4000_bottoms": """
layers = [f'layer {{ name: "r{i}" type: "ReLU" bottom: "nowhere{i}" top: "out{i}" }}' for i in range(4000)]
text = 'input: "data" input_shape { dim: 1 dim: 3 dim: 4 dim: 4 }\\n' + "\\n".join(layers)
""",
    "name_of_20_MB": """
text = 'name: "' + "a" * 20_000_000 + '"\\ninput: "data" input_shape { dim: 1 dim: 3 dim: 4 dim: 4 }\\n'
""",
}


@pytest.mark.parametrize("name", sorted(SCALING))
def test_generated_inputs_take_about_a_second(name):
    script = SCALING[name] + """
import resource, time, netdef
import netdef.compiler.analysis
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
problems = netdef.check(text)
elapsed = time.perf_counter() - start
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print(elapsed, grown, len(text), len(problems))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    elapsed, grown, size, _ = (float(v) for v in result.stdout.split())
    assert elapsed < 3.0, f"{name}: {elapsed:.1f} s"
    assert grown < 2 * size + 100e6, f"{name}: {grown / 1e6:.0f} MB for {size / 1e6:.1f} MB"


def test_receptive_fields_with_huge_parameters_are_bounded():
    """Valid nets whose kernels, strides and zooms reach 10^6: the field pass stays fast (the
    period it tracks is capped) and its sizes are upper bounds of the exact ones."""
    import time

    nets = {
        "deconvolution": ('layer { name: "d" type: "Deconvolution" bottom: "data" top: "d" '
                          'convolution_param { num_output: 1 kernel_h: 1000000 kernel_w: 1 '
                          'stride: 2 pad_h: 499999 } }'),
        "interp": ('layer { name: "d" type: "Interp" bottom: "data" top: "d" '
                   'interp_param { height: 3000001 width: 3 } }'),
        "upsample": ('layer { name: "p" type: "Pooling" bottom: "data" top: "p" top: "m" '
                     'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
                     'layer { name: "d" type: "Upsample" bottom: "p" bottom: "m" top: "d" '
                     'upsample_param { scale_h: 1000000 scale_w: 2 } }'),
    }
    for name, layers in nets.items():
        text = 'input: "data" input_shape { dim: 1 dim: 1 dim: 4 dim: 4 }\n' + layers
        start = time.perf_counter()
        report = netdef.analyze(text)
        assert time.perf_counter() - start < 2.0, name
        field = report.blob("d").rf["data"]
        assert field["size"][0] >= 2 and field["size"][1] >= 1, (name, field)
    assert report.blob("d").rf["data"]["size"] == [3, 2]  # upsample: within one unit of exact


def test_found_by_a_new_campaign():
    """Found by mutating the corpus again after the listed cases were fixed."""
    text = ('input: "data" input_shape { dim: 1 dim: 1 dim: 4 dim: 4 }\n'
            'layer { name: "n" type: "LRN" bottom: "data" top: "n" lrn_param { '
            'local_size: 4294967295 norm_region: WITHIN_CHANNEL } }')
    with pytest.raises(netdef.ParameterError, match="local_size 4294967295 is out of range"):
        netdef.load(text)
