"""The committed bindings are exactly what protoc makes of protos/netdef.proto."""
from __future__ import annotations

import pytest

from .conftest import ROOT


def test_generated_bindings_match_the_proto(tmp_path):
    protoc = pytest.importorskip("grpc_tools.protoc")
    code = protoc.main(["protoc", f"-I{ROOT / 'protos'}", f"--python_out={tmp_path}",
                        str(ROOT / "protos" / "netdef.proto")])
    assert code == 0
    fresh = (tmp_path / "netdef_pb2.py").read_text()
    committed = (ROOT / "netdef" / "proto" / "netdef_pb2.py").read_text()
    assert fresh == committed, "run `make proto` and commit netdef/proto/netdef_pb2.py"


def test_caffe_field_numbers():
    """Spot checks against published caffe.proto numbers."""
    from netdef.proto import netdef_pb2 as pb

    number = lambda message, name: message.DESCRIPTOR.fields_by_name[name].number  # noqa: E731
    assert number(pb.NetParameter, "layer") == 100
    assert number(pb.NetParameter, "layers") == 2
    assert number(pb.LayerParameter, "convolution_param") == 106
    assert number(pb.LayerParameter, "crop_param") == 144
    assert number(pb.LayerParameter, "clip_param") == 148
    assert number(pb.V1LayerParameter, "blobs_lr") == 7
    assert number(pb.V1LayerParameter, "layer") == 1
    assert number(pb.V0LayerParameter, "blobs") == 50
    assert number(pb.BlobProto, "double_data") == 8
    assert number(pb.PoolingParameter, "round_mode") == 13
    assert pb.V1LayerParameter.DECONVOLUTION == 39
    assert pb.PoolingParameter.DESCRIPTOR.fields_by_name["round_mode"].default_value == \
        pb.PoolingParameter.CEIL
