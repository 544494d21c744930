"""Receptive fields, coordinate maps and the crop solver against published and hand-computed numbers."""
from __future__ import annotations

import re

import pytest

import netdef
from netdef.compiler.analysis import check_net
from netdef.errors import AlignmentError

from ..conftest import CORPUS, corpus_files, corpus_id

FCN = CORPUS / "shelhamer+fcn.berkeleyvision.org"
CRF = CORPUS / "torrvision+crfasrnn/python-scripts"
ALEXNET = CORPUS / "BVLC+caffe/models/bvlc_alexnet/deploy.prototxt"


def rf(report, blob, input_name="data"):
    entry = report.blob(blob).rf[input_name]
    assert len(set(entry["size"])) == len(set(entry["stride"])) == len(set(entry["offset"])) == 1
    return entry["size"][0], entry["stride"][0], entry["offset"][0]


def test_alexnet_table_2_1():
    report = netdef.analyze(ALEXNET)
    table = {"conv1": (11, 4), "conv2": (51, 8), "conv3": (99, 16), "conv4": (131, 16),
             "conv5": (163, 16), "pool5": (195, 32)}
    assert {blob: rf(report, blob)[:2] for blob in table} == table
    assert report.blob("fc6").rf == {} and report.blob("prob").rf == {}  # InnerProduct ends it


@pytest.mark.parametrize("net, size", [("voc-fcn-alexnet/val.prototxt", 355),
                                       ("voc-fcn32s/val.prototxt", 404)])
def test_fcn_table_3_1(net, size):
    report = netdef.analyze(FCN / net)
    assert rf(report, "score_fr")[:2] == (size, 32)
    strides = [entry["stride"][0] for blob in report.blobs for entry in blob.rf.values()]
    assert max(strides) == 32


def test_fcn8s_offsets_of_reference_nets_c2():
    report = netdef.analyze(FCN / "voc-fcn8s/deploy.prototxt")
    expected = {"conv1_1": (1, -99), "pool1": (2, -98.5), "pool2": (4, -97.5), "pool3": (8, -95.5),
                "pool4": (16, -91.5), "pool5": (32, -83.5), "fc6": (32, 12.5),
                "upscore2": (16, -11.5), "upscore_pool4": (8, -23.5), "upscore8": (1, -31),
                "score": (1, 0)}
    assert {blob: rf(report, blob)[1:] for blob in expected} == expected
    # reference-nets §C3: VGG16 feature rf sizes
    assert [rf(report, b)[0] for b in ("conv2_2", "conv3_3", "conv4_3", "conv5_3", "pool5")] == \
        [14, 40, 92, 196, 212]
    assert not report.warnings  # the written offsets 5, 9, 31 agree with the maps


def without_crop_params(path) -> str:
    text = path.read_text()
    stripped = re.sub(r"crop_param\s*\{[^}]*\}", "", text)
    assert stripped != text
    return stripped


def crop_warnings(problems):
    return [p for p in problems if p.layer_type == "Crop"]


def test_solver_recovers_fcn8s_offsets():
    net, problems = check_net(without_crop_params(FCN / "voc-fcn8s/deploy.prototxt"))
    crops = [layer for layer in net.layers if layer.type == "Crop"]
    assert [layer.solution["offset"] for layer in crops] == [[5, 5], [9, 9], [31, 31]]
    warnings = crop_warnings(problems)
    assert len(warnings) == 3 and all(w.warning for w in warnings)
    assert "offsets 31, 31" in warnings[2].message and "solved" in warnings[2].message
    report = netdef.analyze(without_crop_params(FCN / "voc-fcn8s/deploy.prototxt"))
    assert rf(report, "score")[1:] == (1, 0)  # aligned with the image


@pytest.mark.parametrize("name", ["TVG_CRFRNN_new_deploy.prototxt", "TVG_CRFRNN_COCO_VOC.prototxt"])
def test_solver_handles_crf_rnn_offsetless_crops(name):
    net, problems = check_net(CRF / name)
    assert not [p for p in problems if not p.warning]
    solutions = [layer.solution["offset"] for layer in net.layers if layer.type == "Crop"]
    assert solutions == [[5, 5], [9, 9], [31, 31]]
    aligned = [p for p in problems if "not aligned" in p.message]
    assert not aligned  # the CRF's unaries, logits and image sit on the same pixels


def test_literal_zero_offsets_on_request():
    _, problems = check_net(CRF / "TVG_CRFRNN_new_deploy.prototxt", solve_crops=False)
    assert not [p for p in problems if "solved" in p.message]
    suggestions = [p.message for p in problems if "do not align" in p.message]
    assert [m.split("give ")[1] for m in suggestions] == ["5, 5", "9, 9", "31, 31"]
    misaligned = [p for p in problems if "not aligned" in p.message]
    assert misaligned and "offset -91.5" in misaligned[0].message


def test_wrong_offset_warns_with_the_right_value():
    text = (FCN / "voc-fcn8s/deploy.prototxt").read_text().replace("offset: 9", "offset: 8")
    _, problems = check_net(text)
    wrong = [p for p in crop_warnings(problems) if "do not align" in p.message]
    assert len(wrong) == 1 and wrong[0].layer == "score_pool3c" and wrong[0].warning
    assert "offsets 8, 8" in wrong[0].message and "give 9, 9" in wrong[0].message
    # the merge that follows sees the misalignment too, naming both blobs
    fuse = [p for p in problems if p.layer == "fuse_pool3"]
    assert fuse and "'upscore_pool4'" in fuse[0].message and "'score_pool3c'" in fuse[0].message


def test_solved_offset_beyond_the_blob_is_an_error():
    # s: 1x1 conv with pad 1 (18 wide, unit 0 at -1), trimmed on the right to 16 wide;
    # aligning it with data needs offset 1, and 1 + 16 > 16
    text = tiny('layer { name: "r" type: "Input" top: "r" input_param { shape { dim: 1 dim: 1 '
                'dim: 16 dim: 16 } } }\n'
                'layer { name: "s" type: "Convolution" bottom: "data" top: "s" '
                'convolution_param { num_output: 1 kernel_size: 1 pad: 1 } }\n'
                'layer { name: "t" type: "Crop" bottom: "s" bottom: "r" top: "t" '
                'crop_param { offset: 0 } }\n'
                'layer { name: "c" type: "Crop" bottom: "t" bottom: "data" top: "c" }\n',
                dims="dim: 1 dim: 1 dim: 16 dim: 16")
    _, problems = check_net(text)
    errors = [p for p in problems if not p.warning]
    assert len(errors) == 2 and all(p.layer == "c" and p.kind is AlignmentError for p in errors)
    assert "solved offset 1 on axis 2 + size 16 exceeds bottom 0's 16" in errors[0].message


TINY = 'layer {{ name: "in" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}\n'


def tiny(body: str, dims="dim: 1 dim: 1 dim: 32 dim: 32") -> str:
    return TINY.format(dims=dims) + body


def test_hand_computed_stack():
    # conv 3x3 s1 p1 -> rf 3 offset 0; pool 2x2 s2 -> rf 4 stride 2 offset 0.5;
    # conv 5x5 s1 p0 dilation 2 (extent 9) -> rf 4 + 8*2 = 20, offset 0.5 + 2*4 = 8.5
    text = tiny('layer { name: "a" type: "Convolution" bottom: "data" top: "a" '
                'convolution_param { num_output: 1 kernel_size: 3 pad: 1 } }\n'
                'layer { name: "b" type: "Pooling" bottom: "a" top: "b" '
                'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
                'layer { name: "c" type: "Convolution" bottom: "b" top: "c" '
                'convolution_param { num_output: 1 kernel_size: 5 dilation: 2 } }\n')
    report = netdef.analyze(text)
    assert rf(report, "a") == (3, 1, 0)
    assert rf(report, "b") == (4, 2, 0.5)
    assert rf(report, "c") == (20, 2, 8.5)


def test_rectangular_windows_give_per_axis_values():
    text = tiny('layer { name: "a" type: "Pooling" bottom: "data" top: "a" pooling_param { '
                'pool: AVE kernel_h: 3 kernel_w: 1 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0 } }\n')
    entry = netdef.analyze(text).blob("a").rf["data"]
    assert entry == {"size": [3, 1], "stride": [2, 1], "offset": [0, 0]}


def test_deconvolution_with_kernel_three_alternates_its_support():
    # stride-2 deconv with k=3 on a stride-4 blob: outputs read 2 and 1 input units in turn,
    # so the widest field is 4 + 4 = 8 pixels, at stride 2, offset 1.5 - 2*(1 - 0) = -0.5
    text = tiny('layer { name: "a" type: "Pooling" bottom: "data" top: "a" '
                'pooling_param { pool: AVE kernel_size: 4 stride: 4 } }\n'
                'layer { name: "b" type: "Deconvolution" bottom: "a" top: "b" '
                'convolution_param { num_output: 1 kernel_size: 3 stride: 2 } }\n')
    assert rf(netdef.analyze(text), "b") == (8, 2, -0.5)


def test_global_pooling_reshape_and_flatten_end_the_field():
    text = tiny('layer { name: "g" type: "Pooling" bottom: "data" top: "g" '
                'pooling_param { pool: AVE global_pooling: true } }\n'
                'layer { name: "r" type: "Reshape" bottom: "data" top: "r" '
                'reshape_param { shape { dim: 0 dim: 0 dim: 16 dim: 64 } } }\n'
                'layer { name: "k" type: "Reshape" bottom: "data" top: "k" '
                'reshape_param { shape { dim: 0 dim: 1 dim: 0 dim: 0 } } }\n'
                'layer { name: "f" type: "Flatten" bottom: "data" top: "f" }\n'
                'layer { name: "s" type: "Softmax" bottom: "data" top: "s" softmax_param { axis: 2 } }\n')
    report = netdef.analyze(text)
    assert [report.blob(b).rf for b in ("g", "r", "f", "s")] == [{}, {}, {}, {}]
    assert rf(report, "k") == (1, 1, 0)  # a reshape that keeps H and W keeps positions


def test_ended_field_stays_ended_through_merges():
    # squeeze-and-excitation: a global branch rescales the map, so every output reads every pixel
    text = tiny('layer { name: "g" type: "Pooling" bottom: "data" top: "g" '
                'pooling_param { pool: AVE global_pooling: true } }\n'
                'layer { name: "f" type: "Flatten" bottom: "g" top: "f" }\n'
                'layer { name: "s" type: "Scale" bottom: "data" bottom: "f" top: "s" '
                'scale_param { axis: 0 } }\n', dims="dim: 1 dim: 1 dim: 8 dim: 8")
    assert netdef.analyze(text).blob("s").rf == {}


def test_misaligned_eltwise_names_both_blobs():
    # a: 3x3 pad 1 keeps offset 0; b: 2x2 pad 1 puts unit 0 at -0.5; cropping b at 0 cannot fix that
    text = tiny('layer { name: "a" type: "Convolution" bottom: "data" top: "a" '
                'convolution_param { num_output: 1 kernel_size: 3 pad: 1 } }\n'
                'layer { name: "b" type: "Convolution" bottom: "data" top: "b" '
                'convolution_param { num_output: 1 kernel_size: 2 pad: 1 } }\n'
                'layer { name: "x" type: "Crop" bottom: "b" bottom: "data" top: "x" '
                'crop_param { offset: 0 } }\n'
                'layer { name: "e" type: "Eltwise" bottom: "a" bottom: "x" top: "e" }\n',
                dims="dim: 1 dim: 1 dim: 16 dim: 16")
    _, problems = check_net(text)
    merge = [p for p in problems if p.layer == "e"]
    assert len(merge) == 1 and merge[0].warning and merge[0].kind is AlignmentError
    assert "'a'" in merge[0].message and "'x'" in merge[0].message
    assert "offset -0.5" in merge[0].message and "offset 0" in merge[0].message


def test_interp_and_upsample_maps():
    # DeepLab Interp zoom 2 on a stride-4 blob: output o reads input o/2 -> stride 2, same origin.
    # SegNet Upsample scale 2: unit i fills block [2i, 2i+1] -> stride 2, origin shifted by -1/2*2.
    text = tiny('layer { name: "a" type: "Pooling" bottom: "data" top: "a" '
                'pooling_param { pool: AVE kernel_size: 4 stride: 4 } }\n'
                'layer { name: "z" type: "Interp" bottom: "a" top: "z" interp_param { zoom_factor: 2 } }\n'
                'layer { name: "m" type: "Pooling" bottom: "data" top: "m" top: "mask" '
                'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
                'layer { name: "u" type: "Upsample" bottom: "m" bottom: "mask" top: "u" '
                'upsample_param { scale: 2 } }\n')
    report = netdef.analyze(text)
    assert rf(report, "a") == (4, 4, 1.5)
    assert rf(report, "z") == (8, 2, 1.5)  # between two input units: both fields
    assert rf(report, "m") == (2, 2, 0.5)
    assert rf(report, "u") == (2, 1, 0)


def test_lrn_within_channel_is_a_window():
    text = tiny('layer { name: "n" type: "LRN" bottom: "data" top: "n" '
                'lrn_param { local_size: 5 norm_region: WITHIN_CHANNEL } }\n'
                'layer { name: "a" type: "LRN" bottom: "data" top: "a" lrn_param { local_size: 5 } }\n')
    report = netdef.analyze(text)
    assert rf(report, "n") == (5, 1, 0) and rf(report, "a") == (1, 1, 0)


@pytest.mark.parametrize("path", corpus_files(), ids=corpus_id)
def test_corpus_nets_have_no_alignment_warnings(path):
    _, problems = check_net(path)
    assert not [p for p in problems if "not aligned" in p.message]
