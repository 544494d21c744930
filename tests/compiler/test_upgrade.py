"""Legacy nets upgrade to their hand-written current-format twins."""
from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format

import netdef
from netdef.compiler.parse import parse_net
from netdef.proto import netdef_pb2 as pb

LEGACY = Path(__file__).parent / "legacy"


@pytest.mark.parametrize("old, new", [("tiny_v0", "tiny_v2"), ("tiny_v1", "tiny_v2"),
                                      ("data_v1", "data_v2")])
def test_upgrades_to_twin(old, new):
    assert netdef.parse(LEGACY / f"{old}.prototxt") == netdef.parse(LEGACY / f"{new}.prototxt")


def test_original_format_is_recorded():
    assert parse_net(LEGACY / "tiny_v0.prototxt").original_format == "V0"
    assert parse_net(LEGACY / "tiny_v1.prototxt").original_format == "V1"
    assert parse_net(LEGACY / "tiny_v2.prototxt").original_format == "V2"


def test_upgraded_layers_keep_their_source_lines():
    parsed = parse_net(LEGACY / "tiny_v0.prototxt")
    names = [layer.name for layer in parsed.net.layer]
    assert names[:3] == ["input", "conv1", "pool1"]  # the padding layer is folded away
    assert parsed.source_map.layer_line(0) == 3  # `input:`
    assert parsed.source_map.layer_line(1) == 6  # conv1's `layers {` block
    assert parsed.source_map.layer_line(2) == 11


def test_batchnorm_frozen_params_are_dropped():
    text = '''layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x"
      param { lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 0 } }'''
    assert len(netdef.parse(text).layer[0].param) == 0


def test_upgrade_cli_text_and_binary(tmp_path, cli):
    out_text = tmp_path / "up.prototxt"
    assert cli("upgrade", LEGACY / "tiny_v1.prototxt", "-o", out_text)[0] == 0
    upgraded = text_format.Parse(out_text.read_text(), pb.NetParameter())
    assert upgraded == netdef.parse(LEGACY / "tiny_v2.prototxt")

    legacy = text_format.Parse((LEGACY / "tiny_v1.prototxt").read_text(), pb.NetParameter())
    binary_in, binary_out = tmp_path / "old.binaryproto", tmp_path / "new.binaryproto"
    binary_in.write_bytes(legacy.SerializeToString())
    assert cli("upgrade", binary_in, "-o", binary_out)[0] == 0
    assert pb.NetParameter.FromString(binary_out.read_bytes()) == upgraded


def test_binary_garbage_is_a_syntax_error(tmp_path):
    path = tmp_path / "junk.caffemodel"
    path.write_bytes(b"\x00\xff\xfe\x07" * 64)
    with pytest.raises(netdef.PrototxtSyntaxError):
        netdef.parse(path)
