"""Read a net definition: text or binary, any Caffe format, upgraded to the current one."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from netdef.errors import NetdefError, Problem, PrototxtSyntaxError, raise_if_errors
from netdef.proto import netdef_pb2 as pb

from .sidefiles import read_bounded
from .textformat import SourceMap, parse_message
from .upgrade import net_format, upgrade

MAX_FILE_BYTES = 2**31  # a definition file this large is certainly not a net definition


@dataclass
class ParsedNet:
    """A net after parsing and upgrade, with where each part came from."""

    net: pb.NetParameter
    source_map: SourceMap
    original_format: str  # V0, V1 or V2
    binary: bool
    warnings: list[Problem] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.source_map.path


def read_source(source) -> tuple[bytes | str, str]:
    """(content, display path) for a path, text, or bytes."""
    if isinstance(source, bytes):
        return source, "<bytes>"
    if isinstance(source, os.PathLike) or ("\n" not in source and "{" not in source):
        path = os.fspath(source)
        try:
            return read_bounded(path, MAX_FILE_BYTES), path
        except OSError as exc:
            raise NetdefError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return source, "<string>"


def _looks_binary(content: bytes) -> bool:
    if b"\0" in content[:4096]:
        return True
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def parse_net(source, *, strict: bool = False, path: str = "<NetParameter>") -> ParsedNet:
    """Parse and upgrade a net (a path, text, bytes, or a NetParameter already in memory,
    shown as `path`); raises a NetdefError holding every error found."""
    if isinstance(source, pb.NetParameter):
        net, source_map, problems, binary = pb.NetParameter(), SourceMap(path), [], False
        net.CopyFrom(source)
        return _upgraded(net, source_map, problems, binary)
    content, path = read_source(source)
    if isinstance(content, bytes) and _looks_binary(content):
        net, source_map, problems, binary = _parse_binary(content, path), SourceMap(path), [], True
    else:
        text = content.decode("utf-8") if isinstance(content, bytes) else content
        net = pb.NetParameter()
        source_map, located = parse_message(text, net, path=path, strict=strict)
        problems = [_name_layer(net, where, problem) for where, problem in located]
        binary = False
    return _upgraded(net, source_map, problems, binary)


def _upgraded(net: pb.NetParameter, source_map: SourceMap, problems: list,
              binary: bool) -> ParsedNet:
    raise_if_errors(problems)
    original = net_format(net)
    problems += upgrade(net, source_map)
    raise_if_errors(problems)
    return ParsedNet(net, source_map, original, binary, warnings=problems)


def _parse_binary(content: bytes, path: str) -> pb.NetParameter:
    net = pb.NetParameter()
    try:
        net.ParseFromString(content)
    except (DecodeError, RuntimeError, ValueError) as exc:
        problem = Problem(PrototxtSyntaxError,
                          f"not a text prototxt, nor a valid binary NetParameter ({exc})", path)
        raise PrototxtSyntaxError(problems=[problem]) from None
    problems = [Problem(PrototxtSyntaxError, f"{where}: {value!r} is not valid UTF-8 text", path)
                for where, value in _undecodable_strings(net, "")]
    raise_if_errors(problems)
    return net


def _undecodable_strings(message, prefix: str):
    """(field path, raw bytes) of every string field that is not UTF-8: protobuf hands
    those over as bytes, which no later pass expects."""
    for fd, value in message.ListFields():
        values = value if fd.is_repeated else [value]
        for index, item in enumerate(values):
            where = f"{prefix}{fd.name}" + (f"[{index}]" if fd.is_repeated else "")
            if fd.type == fd.TYPE_STRING and isinstance(item, bytes):
                yield where, item
            elif fd.message_type is not None:
                yield from _undecodable_strings(item, where + ".")


def _name_layer(net: pb.NetParameter, where: tuple, problem: Problem) -> Problem:
    """Attach the layer name and type to a problem found inside a layer block."""
    if len(where) >= 2 and where[0] in ("layer", "layers"):
        layer = getattr(net, where[0])[where[1]]
        problem.layer = layer.name
        if where[0] == "layer":
            problem.layer_type = layer.type
        else:
            problem.layer_type = pb.V1LayerParameter.LayerType.Name(layer.type)
    return problem
