"""Caffe-exact shape rules on hand-computed tiny nets."""
from __future__ import annotations

import pytest

import netdef


def shape_of(body: str, blob: str, data=(1, 3, 8, 8)):
    dims = " ".join(f"dim: {d}" for d in data)
    text = f'layer {{ name: "in" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}\n'
    return netdef.analyze(text + body).blob(blob).shape


def pool(kernel, stride, pad=0, extra=""):
    return (f'layer {{ name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param {{ '
            f'kernel_size: {kernel} stride: {stride} pad: {pad} {extra} }} }}')


@pytest.mark.parametrize("side, kernel, stride, pad, expected", [
    (7, 2, 2, 0, 4),    # ceil((7-2)/2)+1 = 4 (floor would give 3)
    (8, 2, 2, 0, 4),
    (6, 3, 2, 1, 4),    # ceil((6+2-3)/2)+1 = 4; last window starts at 6 < 6+1, kept
    (5, 2, 2, 1, 3),    # ceil((5+2-2)/2)+1 = 4, but window 3 starts at 6 >= 5+1: dropped
    (1, 3, 1, 1, 1),
    (1, 2, 2, 0, 1),    # kernel past the input: ceil((1-2)/2)+1 = 1 clipped window (OpenCV refuses)
])
def test_pooling_ceil_with_padding_correction(side, kernel, stride, pad, expected):
    assert shape_of(pool(kernel, stride, pad), "p", (1, 1, side, side)) == (1, 1, expected, expected)


def test_pooling_floor_round_mode_and_fork_ceil_mode():
    assert shape_of(pool(2, 2, 0, "round_mode: FLOOR"), "p", (1, 1, 7, 7))[2:] == (3, 3)
    assert shape_of(pool(2, 2, 0, "ceil_mode: false"), "p", (1, 1, 7, 7))[2:] == (3, 3)


def test_global_pooling():
    body = 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: AVE global_pooling: true } }'
    assert shape_of(body, "p", (2, 5, 7, 9)) == (2, 5, 1, 1)


def test_convolution_dilation_and_hw_forms():
    body = ('layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { '
            'num_output: 4 kernel_h: 3 kernel_w: 5 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0 } }\n'
            'layer { name: "d" type: "Convolution" bottom: "data" top: "d" convolution_param { '
            'num_output: 4 kernel_size: 3 dilation: 2 } }\n'
            'layer { name: "h" type: "Convolution" bottom: "data" top: "h" convolution_param { '
            'num_output: 4 kernel_size: 3 hole: 3 } }')
    assert shape_of(body, "c", (1, 3, 9, 9)) == (1, 4, 5, 5)  # (9+2-3)//2+1, (9-5)//1+1
    assert shape_of(body, "d", (1, 3, 9, 9)) == (1, 4, 5, 5)  # extent 5
    assert shape_of(body, "h", (1, 3, 9, 9)) == (1, 4, 3, 3)  # DeepLab hole 3: extent 7


def test_deconvolution_and_crop():
    body = ('layer { name: "up" type: "Deconvolution" bottom: "data" top: "up" convolution_param { '
            'num_output: 2 kernel_size: 4 stride: 2 bias_term: false } }\n'
            'layer { name: "cr" type: "Crop" bottom: "up" bottom: "data" top: "cr" crop_param { offset: 1 } }')
    assert shape_of(body, "up", (1, 3, 8, 8)) == (1, 2, 18, 18)  # 2*(8-1)+4
    assert shape_of(body, "cr", (1, 3, 8, 8)) == (1, 2, 8, 8)


def test_inner_product_reshape_flatten_slice_concat():
    body = ('layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
            'inner_product_param { num_output: 7 axis: 2 } }\n'
            'layer { name: "r" type: "Reshape" bottom: "data" top: "r" reshape_param { shape { dim: 0 dim: -1 } } }\n'
            'layer { name: "f" type: "Flatten" bottom: "data" top: "f" flatten_param { axis: 2 } }\n'
            'layer { name: "s" type: "Slice" bottom: "data" top: "s1" top: "s2" slice_param { slice_point: 1 } }\n'
            'layer { name: "cat" type: "Concat" bottom: "s2" bottom: "data" top: "cat" }')
    assert shape_of(body, "ip") == (1, 3, 7)
    assert shape_of(body, "r") == (1, 192)
    assert shape_of(body, "f") == (1, 3, 64)
    assert shape_of(body, "s2") == (1, 2, 8, 8)
    assert shape_of(body, "cat") == (1, 5, 8, 8)


def test_legacy_inputs_and_in_place_versions():
    text = 'input: "data"\ninput_dim: 2 input_dim: 3 input_dim: 4 input_dim: 4\n' \
           'layer { name: "relu" type: "ReLU" bottom: "data" top: "data" }\n'
    report = netdef.analyze(text)
    assert report.inputs == {"data": (2, 3, 4, 4)}
    assert report.blob("data").in_place == ["relu"]


def test_unknown_shapes_propagate_silently_and_user_inputs_fill_them():
    text = ('layer { name: "py" type: "Python" top: "data" python_param { module: "m" layer: "L" } }\n'
            'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
            'convolution_param { num_output: 4 kernel_size: 3 } }')
    assert netdef.analyze(text).blob("c").shape is None
    assert netdef.analyze(text, inputs={"data": (1, 1, 5, 5)}).blob("c").shape == (1, 4, 3, 3)


def test_phase_filtering():
    text = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }\n'
            'layer { name: "a" type: "ReLU" bottom: "x" top: "a" include { phase: TRAIN } }\n'
            'layer { name: "b" type: "TanH" bottom: "x" top: "b" exclude { phase: TRAIN } }')
    assert [b.name for b in netdef.analyze(text, phase="TRAIN").blobs] == ["x", "a"]
    assert [b.name for b in netdef.analyze(text).blobs] == ["x", "b"]


def test_duplicate_layer_names_are_legal():
    text = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }\n'
            'layer { name: "same" type: "ReLU" bottom: "x" top: "y" }\n'
            'layer { name: "same" type: "ReLU" bottom: "y" top: "z" }')
    assert [b.producer for b in netdef.analyze(text).blobs] == ["in", "same", "same"]
