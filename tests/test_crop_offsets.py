"""Crop offsets as Caffe reads them: written offsets are used as written (right or wrong, with a
warning naming the aligned value), solved offsets only stand in for a missing crop_param, and
`literal_crops` gives BVLC's zeros there. Checked against OpenCV 4.12, which uses the literal
offsets, on a net shaped like HED (VGG-16 with conv1_1 padded by 35 and five side outputs
cropped back onto the image)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import netdef
from netdef.compiler.analysis import check_net

from .test_parity_opencv import relative_l2, scaled_weights

cv2 = pytest.importorskip("cv2")

STAGES = ((2, 8), (2, 16), (3, 16), (3, 32), (3, 32))  # (convolutions, width): HED's, narrowed
UPSAMPLE = {2: (4, 2), 3: (8, 4), 4: (16, 8), 5: (32, 16)}  # side output -> (kernel, stride)


def hed_like(crop_param: str | None) -> str:
    lines = ['name: "hed"', 'input: "data" input_shape { dim: 1 dim: 3 dim: 64 dim: 64 }']
    bottom = "data"
    for stage, (convs, width) in enumerate(STAGES, 1):
        if stage > 1:
            lines.append(f'layer {{ name: "pool{stage - 1}" type: "Pooling" bottom: "{bottom}" '
                         f'top: "pool{stage - 1}" pooling_param {{ pool: MAX kernel_size: 2 '
                         'stride: 2 } }')
            bottom = f"pool{stage - 1}"
        for conv in range(1, convs + 1):
            name = f"conv{stage}_{conv}"
            pad = 35 if name == "conv1_1" else 1
            lines.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" '
                         f'top: "{name}" convolution_param {{ num_output: {width} kernel_size: 3 '
                         f'pad: {pad} }} }}')
            lines.append(f'layer {{ name: "relu{stage}_{conv}" type: "ReLU" bottom: "{name}" '
                         f'top: "{name}" }}')
            bottom = name
        side = f"score-dsn{stage}"
        lines.append(f'layer {{ name: "{side}" type: "Convolution" bottom: "{bottom}" '
                     f'top: "{side}" convolution_param {{ num_output: 1 kernel_size: 1 }} }}')
        if stage in UPSAMPLE:
            kernel, stride = UPSAMPLE[stage]
            up = f"upsample_{stride}"
            lines.append(f'layer {{ name: "{up}" type: "Deconvolution" bottom: "{side}" '
                         f'top: "{up}" convolution_param {{ num_output: 1 kernel_size: {kernel} '
                         f'stride: {stride} bias_term: false }} }}')
            side = up
        param = f" crop_param {{ {crop_param} }}" if crop_param is not None else ""
        lines.append(f'layer {{ name: "crop{stage}" type: "Crop" bottom: "{side}" '
                     f'bottom: "data" top: "side{stage}"{param} }}')
    sides = " ".join(f'bottom: "side{stage}"' for stage in range(1, 6))
    lines.append(f'layer {{ name: "concat" type: "Concat" {sides} top: "concat" '
                 'concat_param { axis: 1 } }')
    lines.append('layer { name: "fuse" type: "Convolution" bottom: "concat" top: "fuse" '
                 'convolution_param { num_output: 1 kernel_size: 1 } }')
    return "\n".join(lines) + "\n"


def crop_offsets(module) -> list:
    return [module.get_submodule(f"crop{stage}").offsets for stage in range(1, 6)]


def against_opencv(text: str, tmp_path, **load_options) -> tuple[float, object]:
    net, problems = check_net(text, solve_crops=not load_options.get("literal_crops"))
    assert not [p for p in problems if not p.warning]
    proto, model = tmp_path / "hed.prototxt", tmp_path / "hed.caffemodel"
    proto.write_text(text)
    model.write_bytes(scaled_weights(net))
    image = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    module = netdef.load(proto, model, **load_options)
    with torch.no_grad():
        ours = module(data=torch.from_numpy(image))["fuse"].numpy()
    cv_net = cv2.dnn.readNetFromCaffe(str(proto), str(model))
    cv_net.setInput(image, "data")
    theirs = cv_net.forward("fuse")
    assert theirs.std() > 0
    return relative_l2(ours, theirs.reshape(ours.shape)), module


def test_written_zero_offsets_are_used_as_written_like_opencv(tmp_path):
    text = hed_like("axis: 2 offset: 0")
    warnings = [p.message for p in netdef.check(text) if p.warning]
    for right in (34, 35, 36, 38, 42):  # each crop is told its aligned offset
        assert any(f"give {right}, {right}" in message for message in warnings), warnings
    error, module = against_opencv(text, tmp_path)
    assert error <= 1e-4
    assert crop_offsets(module) == [(0, 0)] * 5


def test_missing_crop_param_is_solved_and_literal_crops_gives_bvlc_zeros(tmp_path):
    text = hed_like(None)
    solved = netdef.load(text)
    assert crop_offsets(solved) == [(34, 34), (35, 35), (36, 36), (38, 38), (42, 42)]
    error, literal = against_opencv(text, tmp_path, literal_crops=True)
    assert error <= 1e-4
    assert crop_offsets(literal) == [(0, 0)] * 5


def test_literal_crops_on_every_command(cli, tmp_path):
    net = tmp_path / "hed.prototxt"
    net.write_text(hed_like(None))
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 64, 64), np.float32))
    code, _, err = cli("compile", net, "--literal-crops", "-o", tmp_path / "out")
    assert code == 0, err
    assert "offsets=(0, 0)" in (tmp_path / "out" / "model.py").read_text()
    code, _, err = cli("run", net, "--literal-crops", "--input", f"data={tmp_path / 'x.npy'}",
                       "--out", tmp_path / "y.npz")
    assert code == 0, err
