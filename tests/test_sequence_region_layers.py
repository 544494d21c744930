"""ROIPooling, SPP, RNN, LSTM and LSTMUnit against OpenCV and numpy transcriptions of Caffe."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import torch

import netdef
from netdef.compiler.weights import write_caffemodel

RNG = np.random.default_rng(7)


def _caffemodel(tmp_path, layers):
    path = tmp_path / "w.caffemodel"
    out = io.BytesIO()
    write_caffemodel(out, layers)
    path.write_bytes(out.getvalue())
    return path


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# ------------------------------------------------------------------ ROIPooling
ROI_NET = """
name: "roi"
input: "data" input_shape {{ dim: 2 dim: 3 dim: 9 dim: 11 }}
input: "rois" input_shape {{ dim: {count} dim: 5 }}
layer {{ name: "roi" type: "ROIPooling" bottom: "data" bottom: "rois" top: "pool"
  roi_pooling_param {{ pooled_h: 3 pooled_w: 2 spatial_scale: {scale} }} }}
"""


@pytest.mark.parametrize("seed", range(4))
def test_roi_pooling_matches_opencv(tmp_path, seed):
    rng = np.random.default_rng(seed)
    count, scale = 12, [0.5, 0.25, 1.0, 0.0625][seed]
    corners = rng.uniform(-8, 30 / scale / 2, (count, 4)).astype(np.float32)
    rois = np.column_stack([rng.integers(0, 2, count), np.minimum(corners[:, :2], corners[:, 2:]),
                            np.maximum(corners[:, :2], corners[:, 2:])]).astype(np.float32)
    rois[0] = [1, 4, 4, 4, 4]  # a single cell
    rois[1] = [0] + [40 / scale] * 4  # wholly outside: every bin empty
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    text = ROI_NET.format(count=count, scale=scale)
    ours = netdef.load(text)(data=torch.from_numpy(x), rois=torch.from_numpy(rois))["pool"]
    (tmp_path / "roi.prototxt").write_text(text)
    reference = cv2.dnn.readNetFromCaffe(str(tmp_path / "roi.prototxt"))
    reference.setInput(x, "data")
    reference.setInput(rois, "rois")
    assert np.array_equal(ours.numpy(), reference.forward("roi"))
    assert not ours[1].any()


# ------------------------------------------------------------------ SPP
def _spp_reference(x, height, method):
    """Caffe's SPP level by level: explicit windows, the AVE divisor clipped to the padded map."""
    n, c, h, w = x.shape
    pieces = []
    for level in range(height):
        bins = 2 ** level
        kh, kw = -(-h // bins), -(-w // bins)
        ph, pw = (kh * bins - h + 1) // 2, (kw * bins - w + 1) // 2
        out = np.zeros((n, c, bins, bins), np.float32)
        for i in range(bins):
            for j in range(bins):
                top, left = i * kh - ph, j * kw - pw
                bottom, right = min(top + kh, h + ph), min(left + kw, w + pw)
                window = x[:, :, max(top, 0):min(bottom, h), max(left, 0):min(right, w)]
                if method == "MAX":
                    out[:, :, i, j] = window.max((2, 3))
                else:
                    out[:, :, i, j] = window.sum((2, 3)) / ((bottom - top) * (right - left))
        pieces.append(out)
    if height == 1:
        return pieces[0]
    return np.concatenate([p.reshape(n, -1) for p in pieces], 1)


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("height,size", [(1, (5, 7)), (3, (13, 13)), (3, (10, 15)), (2, (6, 9))])
def test_spp_matches_caffes_levels(method, height, size):
    x = RNG.standard_normal((2, 3) + size).astype(np.float32)
    text = (f'input: "data" input_shape {{ dim: 2 dim: 3 dim: {size[0]} dim: {size[1]} }}\n'
            f'layer {{ name: "spp" type: "SPP" bottom: "data" top: "spp" '
            f'spp_param {{ pyramid_height: {height} pool: {method} }} }}')
    expected = _spp_reference(x, height, method)
    assert netdef.analyze(text).blob("spp").shape == expected.shape
    ours = netdef.load(text)(data=torch.from_numpy(x))["spp"].numpy()
    assert np.allclose(ours, expected, atol=1e-6)


def test_spp_too_small_for_its_pyramid_is_a_shape_error():
    text = ('input: "data" input_shape { dim: 1 dim: 3 dim: 5 dim: 5 }\n'
            'layer { name: "spp" type: "SPP" bottom: "data" top: "spp" '
            'spp_param { pyramid_height: 3 } }')
    problems = netdef.check(text)
    assert any(p.kind is netdef.ShapeError and "too small" in p.message for p in problems)


# ------------------------------------------------------------------ RNN and LSTM
SEQ_INPUTS = """
input: "x" input_shape { dim: 6 dim: 3 dim: 2 dim: 2 }
input: "cont" input_shape { dim: 6 dim: 3 }
input: "static" input_shape { dim: 3 dim: 5 }
"""
CONT = np.array([[0, 0, 0], [1, 1, 0], [1, 1, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]], np.float32)


def _lstm_reference(x, cont, static, w_xc, b_c, w_xc_static, w_hc, h=None, c=None):
    """The unrolled net of Caffe's LSTMLayer, step by step in float64."""
    steps, batch = x.shape[:2]
    hidden_size = w_hc.shape[1]
    h = np.zeros((batch, hidden_size)) if h is None else h
    c = np.zeros((batch, hidden_size)) if c is None else c
    x_gates = x.reshape(steps, batch, -1) @ w_xc.T + b_c
    static_gates = static @ w_xc_static.T if static is not None else 0
    outputs = []
    for t in range(steps):
        keep = cont[t][:, None]
        gates = (keep * h) @ w_hc.T + x_gates[t] + static_gates
        i, f, o, g = np.split(gates, 4, axis=1)
        c = keep * _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs), h, c


def _rnn_reference(x, cont, w_xh, b_h, w_hh, w_ho, b_o):
    steps, batch = x.shape[:2]
    h = np.zeros((batch, w_hh.shape[0]))
    outputs = []
    for t in range(steps):
        h = np.tanh((cont[t][:, None] * h) @ w_hh.T + x[t].reshape(batch, -1) @ w_xh.T + b_h)
        outputs.append(np.tanh(h @ w_ho.T + b_o))
    return np.stack(outputs)


def _random(*shape):
    return (RNG.standard_normal(shape) * 0.6).astype(np.float32)


def test_lstm_with_static_input_matches_caffes_unrolled_net(tmp_path):
    hidden = 4
    blobs = [_random(4 * hidden, 4), _random(4 * hidden), _random(4 * hidden, 5),
             _random(4 * hidden, hidden)]
    weights = _caffemodel(tmp_path, [("lstm", "LSTM", blobs)])
    text = SEQ_INPUTS + ('layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" '
                         'bottom: "static" top: "h" recurrent_param { num_output: 4 } }')
    x, static = _random(6, 3, 2, 2), _random(3, 5)
    ours = netdef.load(text, weights)(x=torch.from_numpy(x), cont=torch.from_numpy(CONT),
                                      static=torch.from_numpy(static))["h"]
    expected = _lstm_reference(x, CONT, static, *blobs)[0]
    assert ours.shape == (6, 3, hidden)
    assert np.allclose(ours.detach().numpy(), expected, atol=1e-5)


def test_lstm_exposed_states_carry_a_sequence_across_calls(tmp_path):
    blobs = [_random(12, 4), _random(12), _random(12, 3)]
    weights = _caffemodel(tmp_path, [("lstm", "LSTM", blobs)])
    text = ('input: "x" input_shape { dim: 3 dim: 3 dim: 4 }\n'
            'input: "cont" input_shape { dim: 3 dim: 3 }\n'
            'input: "h0" input_shape { dim: 1 dim: 3 dim: 3 }\n'
            'input: "c0" input_shape { dim: 1 dim: 3 dim: 3 }\n'
            'layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" bottom: "h0" '
            'bottom: "c0" top: "h" top: "hT" top: "cT" '
            'recurrent_param { num_output: 3 expose_hidden: true } }')
    model = netdef.load(text, weights)
    x, cont = _random(6, 3, 4), CONT
    state = dict(h0=torch.zeros(1, 3, 3), c0=torch.zeros(1, 3, 3))
    halves = []
    for part in (slice(0, 3), slice(3, 6)):
        out = model(x=torch.from_numpy(x[part]), cont=torch.from_numpy(cont[part]), **state)
        halves.append(out["h"].detach().numpy())
        state = dict(h0=out["hT"], c0=out["cT"])
    expected, h_last, c_last = _lstm_reference(x, cont, None, blobs[0], blobs[1], None, blobs[2])
    assert np.allclose(np.concatenate(halves), expected, atol=1e-5)
    assert np.allclose(state["h0"].detach().numpy()[0], h_last, atol=1e-5)
    assert np.allclose(state["c0"].detach().numpy()[0], c_last, atol=1e-5)


def test_rnn_matches_caffes_unrolled_net(tmp_path):
    blobs = [_random(5, 4), _random(5), _random(5, 5), _random(5, 5), _random(5)]
    weights = _caffemodel(tmp_path, [("rnn", "RNN", blobs)])
    text = SEQ_INPUTS + ('layer { name: "rnn" type: "RNN" bottom: "x" bottom: "cont" top: "o" '
                         'recurrent_param { num_output: 5 } }\n'
                         'layer { name: "quiet" type: "Silence" bottom: "static" }')
    x = _random(6, 3, 2, 2)
    ours = netdef.load(text, weights)(x=torch.from_numpy(x), cont=torch.from_numpy(CONT),
                                      static=torch.zeros(3, 5))["o"]
    assert np.allclose(ours.detach().numpy(), _rnn_reference(x, CONT, *blobs), atol=1e-5)


def test_recurrent_blob_count_follows_the_static_input(tmp_path):
    """Without a static input the LSTM has 3 blobs; a 4-blob caffemodel is refused."""
    weights = _caffemodel(tmp_path, [("lstm", "LSTM", [_random(8, 4), _random(8), _random(8, 5),
                                                        _random(8, 2)])])
    text = SEQ_INPUTS + ('layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" top: "h" '
                         'recurrent_param { num_output: 2 } }\n'
                         'layer { name: "quiet" type: "Silence" bottom: "static" }')
    with pytest.raises(netdef.WeightError, match="4 blobs; the layer takes 3"):
        netdef.load(text, weights)


def test_recurrent_bottom_and_top_counts_are_checked():
    text = SEQ_INPUTS + ('layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" top: "h" '
                         'top: "extra" recurrent_param { num_output: 2 } }')
    problems = [str(p) for p in netdef.check(text)]
    assert any("takes 1 top(s)" in p for p in problems)


def test_lstm_unit_is_one_step():
    cell, gates = _random(1, 3, 4), _random(1, 3, 16)
    cont = np.array([[1, 0, 1]], np.float32)
    text = ('input: "c" input_shape { dim: 1 dim: 3 dim: 4 }\n'
            'input: "g" input_shape { dim: 1 dim: 3 dim: 16 }\n'
            'input: "k" input_shape { dim: 1 dim: 3 }\n'
            'layer { name: "unit" type: "LSTMUnit" bottom: "c" bottom: "g" bottom: "k" '
            'top: "c1" top: "h1" }')
    out = netdef.load(text)(c=torch.from_numpy(cell), g=torch.from_numpy(gates),
                            k=torch.from_numpy(cont))
    i, f, o, g = np.split(gates[0], 4, axis=1)
    c1 = cont[0][:, None] * _sigmoid(f) * cell[0] + _sigmoid(i) * np.tanh(g)
    assert np.allclose(out["c1"].numpy()[0], c1, atol=1e-6)
    assert np.allclose(out["h1"].numpy()[0], _sigmoid(o) * np.tanh(c1), atol=1e-6)


def test_recurrent_layers_backpropagate_in_float64():
    text = SEQ_INPUTS + ('layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" '
                         'bottom: "static" top: "h" recurrent_param { num_output: 2 '
                         'weight_filler { type: "gaussian" std: 0.5 } } }')
    model = netdef.load(text, dtype=torch.float64)
    x = torch.randn(6, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    static = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    cont = torch.from_numpy(CONT).double()
    assert torch.autograd.gradcheck(lambda a, s: model(x=a, cont=cont, static=s)["h"],
                                    (x, static))


MULTI_RUNNER = """
import sys, numpy as np, torch
sys.path.insert(0, sys.argv[1])
import model
inputs = {k: torch.from_numpy(v) for k, v in np.load(sys.argv[2]).items()}
out = model.load()(**inputs)
np.savez(sys.argv[3], **{k: v.detach().numpy() for k, v in out.items()})
"""


def test_compiled_model_py_runs_these_layers(tmp_path):
    import subprocess
    import sys

    from netdef.compiler.codegen import compile_net

    text = SEQ_INPUTS + """
input: "image" input_shape { dim: 2 dim: 3 dim: 9 dim: 11 }
input: "rois" input_shape { dim: 4 dim: 5 }
layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" bottom: "static" top: "h"
  recurrent_param { num_output: 3 weight_filler { type: "uniform" min: -0.5 max: 0.5 } } }
layer { name: "rnn" type: "RNN" bottom: "x" bottom: "cont" top: "o"
  recurrent_param { num_output: 2 weight_filler { type: "uniform" min: -0.5 max: 0.5 } } }
layer { name: "spp" type: "SPP" bottom: "image" top: "spp" spp_param { pyramid_height: 2 pool: AVE } }
layer { name: "roi" type: "ROIPooling" bottom: "image" bottom: "rois" top: "roi"
  roi_pooling_param { pooled_h: 2 pooled_w: 2 spatial_scale: 0.5 } }
"""
    net = tmp_path / "net.prototxt"
    net.write_text(text)
    compile_net(net, tmp_path / "out")
    inputs = dict(x=_random(6, 3, 2, 2), cont=CONT, static=_random(3, 5),
                  image=_random(2, 3, 9, 11),
                  rois=np.array([[0, 0, 0, 8, 8], [1, 2, 2, 20, 16], [0, 5, 1, 9, 3],
                                 [1, 0, 0, 1, 1]], np.float32))
    np.savez(tmp_path / "in.npz", **inputs)
    subprocess.run([sys.executable, "-c", MULTI_RUNNER, str(tmp_path / "out"),
                    str(tmp_path / "in.npz"), str(tmp_path / "y.npz")], check=True, cwd=tmp_path)
    theirs = np.load(tmp_path / "y.npz")
    ours = netdef.load(net)(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    assert sorted(theirs.files) == sorted(ours) == ["h", "o", "roi", "spp"]
    for name, value in ours.items():
        assert np.array_equal(theirs[name], value.detach().numpy()), name
