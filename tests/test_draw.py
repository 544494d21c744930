"""`netdef draw`: DOT text (golden for models/*), and real renders with graphviz's `dot`."""
from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import pytest

from netdef.compiler.analysis import check_net
from netdef.compiler.draw import to_dot

from .conftest import CORPUS, ROOT, corpus_files, corpus_id

FCN8S = CORPUS / "shelhamer+fcn.berkeleyvision.org/voc-fcn8s/deploy.prototxt"


@pytest.mark.parametrize("name", ["fcn32s", "fcn16s", "fcn8s", "fcn8s_crfrnn"])
def test_models_dot_matches_golden(golden, name):
    net, _ = check_net(ROOT / "models" / f"{name}.prototxt")
    golden(f"{name}.dot", to_dot(net))


def test_in_place_layers_fold_into_their_producer():
    net, _ = check_net(FCN8S)
    dot = to_dot(net)
    conv = next(line for line in dot.splitlines() if "<B>conv1_1</B>" in line)
    assert "relu1_1: ReLU" in conv
    assert not [line for line in dot.splitlines() if "<B>relu1_1</B>" in line]
    # one blob node per Caffe blob, labelled with shape and rf / stride
    pool4 = [line for line in dot.splitlines() if line.startswith('  "B:pool4" [')]
    assert len(pool4) == 1 and "1x512x44x44" in pool4[0] and "rf 100 / 16" in pool4[0]
    assert "3x3 pad 100, 64" in conv  # key parameters


def test_in_place_layer_is_not_folded_when_its_bottom_is_read_first():
    text = ('layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 '
            'dim: 4 dim: 4 } } }\n'
            'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
            'convolution_param { num_output: 1 kernel_size: 1 } }\n'
            'layer { name: "early" type: "Sigmoid" bottom: "c" top: "early" }\n'
            'layer { name: "r" type: "ReLU" bottom: "c" top: "c" }\n')
    dot = to_dot(check_net(text)[0])
    assert "<B>r</B>" in dot  # drawn as its own node: 'early' read c before the ReLU


def test_phase_selects_layers(cli, tmp_path):
    model = ROOT / "models" / "fcn8s.prototxt"
    for phase, has_loss in (("TRAIN", True), ("TEST", False)):
        out = tmp_path / f"{phase}.dot"
        assert cli("draw", model, "--phase", phase, "-o", out)[0] == 0
        assert ("<B>loss</B>" in out.read_text()) == has_loss
    assert cli("draw", model, "--rankdir", "LR", "-o", tmp_path / "lr.dot")[0] == 0
    assert "rankdir=LR" in (tmp_path / "lr.dot").read_text()
    assert cli("draw", model, "-o", tmp_path / "net.jpeg")[0] == 2


needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="graphviz's dot is missing: `make setup` installs it")


@needs_dot
@pytest.mark.slow
@pytest.mark.parametrize("path", corpus_files(), ids=corpus_id)
def test_corpus_renders_with_dot(cli, tmp_path, path):
    net, _ = check_net(path)
    svg, png = tmp_path / "net.svg", tmp_path / "net.png"
    assert cli("draw", path, "-o", svg)[0] == 0
    assert cli("draw", path, "-o", png)[0] == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    nodes = ET.parse(svg).getroot().iter("{http://www.w3.org/2000/svg}g")
    titles = [n.find("{http://www.w3.org/2000/svg}title").text for n in nodes
              if n.get("class") == "node"]
    assert sum(title.startswith("L") for title in titles) >= 1
    assert len(titles) == to_dot(net).count("shape=")


@needs_dot
def test_pdf_render(cli, tmp_path):
    out = tmp_path / "fcn8s.pdf"
    assert cli("draw", FCN8S, "-o", out)[0] == 0
    assert out.read_bytes()[:5] == b"%PDF-"
