"""netdef's text parser against protobuf's own, and its handling of bad text."""
from __future__ import annotations

import pytest
from google.protobuf import text_format

from netdef.compiler.textformat import parse_message
from netdef.errors import PrototxtSyntaxError, SchemaError
from netdef.proto import netdef_pb2 as pb

from ..conftest import corpus_files, corpus_id


@pytest.mark.parametrize("path", corpus_files(), ids=corpus_id)
def test_same_message_as_protobuf_text_format(path):
    text = path.read_text()
    ours, reference = pb.NetParameter(), pb.NetParameter()
    _, problems = parse_message(text, ours)
    text_format.Parse(text, reference)
    assert problems == []
    assert ours == reference


def test_scalar_forms_match_protobuf():
    text = """name: 'a' "b"  # adjacent strings join
    layer { name: "x\\tq" type: 'Power' top: "t" bottom: "b"
            power_param < power: -inf scale: 1e3 shift: .5f > loss_weight: [1, 2.5] }
    force_backward: t debug_info: 0
    input_dim: 0x10 input_dim: -7"""
    ours, reference = pb.NetParameter(), pb.NetParameter()
    parse_message(text, ours)
    text_format.Parse(text, reference)
    assert ours == reference


def test_source_map_lines():
    text = 'name: "n"\nlayer {\n  name: "a"\n  type: "ReLU"\n  bottom: "x"\n  bottom: "y"\n}\n'
    source_map, _ = parse_message(text, pb.NetParameter())
    assert source_map.line_of(("layer", 0)) == 2
    assert source_map.line_of(("layer", 0, "bottom", 1)) == 6
    assert source_map.line_of(("layer", 0, "relu_param", "engine")) == 2  # nearest ancestor


def test_all_binding_problems_are_collected():
    text = 'layer { name: "a" typ: "ReLU" }\nlayer { name: "b" relu_param { negative_slope: "x" } }\n'
    _, problems = parse_message(text, pb.NetParameter(), strict=True)
    assert [p.line for _, p in problems] == [1, 2]
    assert "did you mean 'type'" in problems[0][1].message


def test_unknown_fields_warn_unless_strict():
    text = 'layer { name: "a" type: "ReLU" colour: 3 shade { x: 1 } }'
    _, problems = parse_message(text, pb.NetParameter())
    assert [p.warning for _, p in problems] == [True, True]


@pytest.mark.parametrize("text, message", [
    ("layer {" * 200, "nested"),
    ('name: "abc', "unterminated"),
    ("layer { name: }", "expected a value"),
    ("layer }", "expected ':' or '{'"),
])
def test_syntax_errors(text, message):
    with pytest.raises(PrototxtSyntaxError, match=message):
        parse_message(text, pb.NetParameter())


def test_huge_integer_is_a_schema_problem_not_a_crash():
    _, problems = parse_message("input_dim: " + "9" * 5000, pb.NetParameter())
    assert problems and problems[0][1].kind is SchemaError
