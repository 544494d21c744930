"""The streaming caffemodel reader and weight binding: formats, damage, shape checks."""
from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import torch
from google.protobuf import text_format

import netdef
from netdef.compiler.weights import write_caffemodel
from netdef.compiler.weights import read_caffemodel
from netdef.proto import netdef_pb2 as pb

NET = """
layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 5 dim: 5 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 3 kernel_size: 3 } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 4 } }
"""
RNG = np.random.default_rng(0)
CONV_W = RNG.standard_normal((3, 2, 3, 3)).astype(np.float32)
CONV_B = RNG.standard_normal(3).astype(np.float32)
FC_W = RNG.standard_normal((4, 27)).astype(np.float32)
FC_B = RNG.standard_normal(4).astype(np.float32)


def model_bytes(layers, v1=False) -> bytes:
    out = io.BytesIO()
    write_caffemodel(out, layers, v1=v1)
    return out.getvalue()


GOOD = [("conv", "Convolution", [CONV_W, CONV_B]), ("fc", "InnerProduct", [FC_W, FC_B])]


def files(tmp_path, data: bytes):
    proto, model = tmp_path / "net.prototxt", tmp_path / "net.caffemodel"
    proto.write_text(NET)
    model.write_bytes(data)
    return proto, model


def test_protobuf_reads_what_the_writer_writes():
    # the writer is checked against protobuf's own decoder, then the reader against the writer
    message = pb.NetParameter.FromString(model_bytes(GOOD))
    assert [layer.name for layer in message.layer] == ["conv", "fc"]
    assert list(message.layer[0].blobs[0].shape.dim) == [3, 2, 3, 3]
    assert np.array_equal(np.array(message.layer[1].blobs[0].data, np.float32), FC_W.ravel())


def test_reader_handles_unpacked_and_double_data_and_unknown_fields(tmp_path):
    message = pb.NetParameter(name="x")
    layer = message.layer.add(name="conv", type="Convolution")
    layer.convolution_param.num_output = 3  # a field the reader must skip
    blob = layer.blobs.add()
    blob.shape.dim.extend(CONV_W.shape)
    blob.double_data.extend(CONV_W.ravel().astype(np.float64))
    bias = layer.blobs.add(num=1, channels=1, height=1, width=3)  # legacy 4-D, no shape
    bias.data.extend(CONV_B.tolist())
    data = message.SerializeToString()
    data += b"\xa8\xc0\x04\x07"  # an unknown varint field (number 8200)
    # protobuf writes repeated floats packed; write the bias unpacked by hand as well
    unpacked = b"".join(b"\x2d" + struct.pack("<f", v) for v in CONV_B)
    (tmp_path / "a.caffemodel").write_bytes(data)
    layers = read_caffemodel(tmp_path / "a.caffemodel")
    assert np.allclose(layers[0].blobs[0], CONV_W) and layers[0].blobs[0].dtype == np.float64
    assert layers[0].blobs[1].shape == (1, 1, 1, 3) and np.array_equal(layers[0].blobs[1].ravel(), CONV_B)
    blob_bytes = b"\x3a\x02\x08\x03" + unpacked  # shape {dim: 3} then three unpacked floats
    layer_bytes = b"\x0a\x01b" + b"\x3a" + bytes([len(blob_bytes)]) + blob_bytes
    (tmp_path / "b.caffemodel").write_bytes(b"\xa2\x06" + bytes([len(layer_bytes)]) + layer_bytes)
    assert np.array_equal(read_caffemodel(tmp_path / "b.caffemodel")[0].blobs[0], CONV_B)


def test_load_binds_weights_and_matches_numpy(tmp_path):
    proto, model = files(tmp_path, model_bytes(GOOD))
    module = netdef.load(proto, model)
    x = RNG.standard_normal((1, 2, 5, 5)).astype(np.float32)
    out = module(data=torch.from_numpy(x))["fc"].detach().numpy()
    conv = np.zeros((3, 3, 3), np.float32)
    for o in range(3):
        for i in range(3):
            for j in range(3):
                conv[o, i, j] = (x[0, :, i:i + 3, j:j + 3] * CONV_W[o]).sum() + CONV_B[o]
    assert np.allclose(out[0], FC_W @ conv.ravel() + FC_B, atol=1e-4)


def test_v1_weights_load(tmp_path):
    proto, model = files(tmp_path, model_bytes(GOOD, v1=True))
    layers = read_caffemodel(model)
    assert [(l.name, l.type) for l in layers] == [("conv", "Convolution"), ("fc", "InnerProduct")]
    assert layers[1].blobs[0].shape == (1, 1, 4, 27)  # legacy 4-D, coerced on binding
    module = netdef.load(proto, model)
    assert torch.equal(module.fc.weight.detach(), torch.from_numpy(FC_W))


def test_wrong_blob_shape_names_layer_blob_and_shapes(tmp_path):
    bad = [("conv", "Convolution", [CONV_W, CONV_B]),
           ("fc", "InnerProduct", [FC_W[:, :26], FC_B])]
    proto, model = files(tmp_path, model_bytes(bad))
    with pytest.raises(netdef.WeightError) as error:
        netdef.load(proto, model)
    message = str(error.value)
    assert "layer 'fc' (InnerProduct)" in message
    assert message.startswith(f"{proto}:5: ") and str(model) in message  # prototxt line, file
    assert "blob 0: expected shape 4x27, the caffemodel has 4x26" in message


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "huge length"])
def test_damaged_files_give_weight_errors(tmp_path, damage):
    data = model_bytes(GOOD)
    data = {"truncated": data[:len(data) // 2], "garbage": b"\xff" * 64, "empty": b"",
            "huge length": b"\xa2\x06\xff\xff\xff\xff\x0f" + data}[damage]
    proto, model = files(tmp_path, data)
    with pytest.raises(netdef.WeightError) as error:
        netdef.load(proto, model)
    assert str(model) in str(error.value)


def test_missing_file_is_a_weight_error(tmp_path):
    proto, _ = files(tmp_path, b"")
    with pytest.raises(netdef.WeightError):
        netdef.load(proto, tmp_path / "absent.caffemodel")


def test_duplicate_layer_names_bind_in_order(tmp_path):
    text = NET.replace('name: "fc"', 'name: "conv"', 1).replace("top: \"fc\"", "top: \"fc\"")
    twice = [("conv", "Convolution", [CONV_W, CONV_B]), ("conv", "InnerProduct", [FC_W, FC_B])]
    proto, model = files(tmp_path, model_bytes(twice))
    proto.write_text(text)
    module = netdef.load(proto, model)
    assert torch.equal(module.conv.weight.detach(), torch.from_numpy(CONV_W))
    assert torch.equal(module.conv_2.weight.detach(), torch.from_numpy(FC_W))


def test_graph_module_is_readable():
    module = netdef.load(text_format.Parse(NET, pb.NetParameter()).SerializeToString())
    assert "def forward(self, data)" in module.code
    nodes = {n.meta.get("caffe_layer"): n for n in module.graph.nodes if n.op == "call_module"}
    assert nodes["fc"].meta["caffe_type"] == "InnerProduct"
    out = module(data=torch.zeros(1, 2, 5, 5))
    assert list(out) == ["fc"] and out["fc"].shape == (1, 4)
