"""The .caffemodel wire format: a streaming reader of layer name, type and blobs (nothing
else), and the writer of the same fields, both from one table of field numbers (FIELD).

A caffemodel is a binary NetParameter. Decoding it with protobuf would need
the whole file as a message (2 GiB limit, dialect fields, a second copy of
every weight). Instead the wire format is walked over an mmap: only the layer
name, type and blobs are decoded; every other field, known or not, is
skipped by its wire type; float data become numpy views of the file.

The writer puts a BlobProto's float data in one packed field, so a 500 MB model is a few
large byte copies rather than hundreds of millions of protobuf appends.
"""
from __future__ import annotations

import itertools
import math
import mmap
import os
import re
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable

import numpy as np

from netdef.errors import Problem, WeightError

from .sidefiles import MAX_SIDE_FILE_BYTES, read_bounded

VARINT, FIXED64, DELIMITED, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5


class FIELD:
    """caffe.proto's field numbers for the parts of a net that carry weights."""

    NET_LAYER, NET_V1_LAYERS = 100, 2  # NetParameter.layer (V2), .layers (V1)
    NAME, TYPE, BLOBS = 1, 2, 7  # LayerParameter
    V1_NAME, V1_TYPE, V1_BLOBS, V1_V0_LAYER = 4, 5, 6, 1  # V1LayerParameter (type: an enum)
    V0_NAME, V0_TYPE, V0_BLOBS = 1, 2, 50  # V0LayerParameter, inside a V1 layer
    LEGACY_DIMS = (1, 2, 3, 4)  # BlobProto num, channels, height, width
    DATA, SHAPE, DOUBLE_DATA = 5, 7, 8  # BlobProto (float data packed or not)
    DIM = 1  # BlobShape.dim


@dataclass
class CaffeLayer:
    name: str
    type: str
    blobs: list[np.ndarray] = field(default_factory=list)
    # (file offset, bytes) of each blob's float32 data when it lies packed in the file, so
    # a converter can copy it file to file in the kernel; None where it was decoded
    spans: list[tuple[int, int] | None] = field(default_factory=list)
    # for a state dict (`compile`'s weights.safetensors, `convert --net`): `name` is the
    # module and these its tensors' names, in the order of `blobs`
    blob_names: list[str] | None = None

    def in_order(self, names: list[str]) -> "CaffeLayer":
        """The named blobs in Caffe's order `names`, up to the first one the file lacks."""
        found = dict(zip(self.blob_names, self.blobs))
        blobs = [found[name] for name in itertools.takewhile(found.__contains__, names)]
        return CaffeLayer(self.name, self.type, blobs, [None] * len(blobs))


class WireError(Exception):
    pass


class Reader:
    """A cursor over a bytes-like buffer, bounded by `end`."""

    def __init__(self, buffer, start: int = 0, end: int | None = None):
        self.buffer, self.position = buffer, start
        self.end = len(buffer) if end is None else end

    def at_end(self) -> bool:
        return self.position >= self.end

    def varint(self) -> int:
        result = shift = 0
        buffer, position = self.buffer, self.position
        while True:
            if position >= self.end or shift > 63:
                raise WireError(f"truncated or malformed varint at byte {self.position}")
            byte = buffer[position]
            position += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                self.position = position
                return result
            shift += 7

    def key(self) -> tuple[int, int]:
        key = self.varint()
        return key >> 3, key & 7

    def delimited(self) -> tuple[int, int]:
        """(start, end) of a length-delimited payload, checked against the bounds."""
        length = self.varint()
        start = self.position
        if start + length > self.end:
            raise WireError(f"a field of {length} bytes at byte {start} runs past the end "
                            f"({self.end}); the file is truncated or corrupted")
        self.position = start + length
        return start, start + length

    def skip(self, wire_type: int) -> None:
        if wire_type == VARINT:
            self.varint()
        elif wire_type == DELIMITED:
            self.delimited()
        elif wire_type in (FIXED64, FIXED32):
            self._advance(8 if wire_type == FIXED64 else 4)
        else:
            raise WireError(f"unsupported wire type {wire_type} at byte {self.position}")

    def _advance(self, count: int) -> None:
        if self.position + count > self.end:
            raise WireError(f"truncated field at byte {self.position}")
        self.position += count

    def text(self) -> str:
        start, end = self.delimited()
        return bytes(self.buffer[start:end]).decode("utf-8", errors="replace")

    def sub(self) -> "Reader":
        start, end = self.delimited()
        return Reader(self.buffer, start, end)


def read_caffemodel(path: str | os.PathLike) -> list[CaffeLayer]:
    """Every layer that has blobs, in file order; a WeightError for a damaged file."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                raise _error(path, "the file is empty")
            buffer = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise _error(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        layers = parse_layers(memoryview(buffer))
    except WireError as exc:
        if _looks_like_text(buffer[:4096]):
            raise _error(path, "this is protobuf text (a prototxt), not a binary .caffemodel; "
                         "weights files are binary, nets are given with --net or as NET") \
                from None
        raise _error(path, str(exc)) from None
    base = np.frombuffer(buffer, np.uint8).ctypes.data
    for layer in layers:
        layer.spans = [(blob.ctypes.data - base, blob.nbytes)
                       if blob.dtype == np.dtype("<f4") and _inside(blob, base, size) else None
                       for blob in layer.blobs]
    return layers


# The mark `compile` puts on weights its optimisation rewrote (safetensors metadata)
OPTIMIZED = {"netdef": "optimized: folded for the compiled model.py only"}


def read_weights(path: str | os.PathLike) -> list[CaffeLayer]:
    """A .caffemodel, or a .safetensors file keyed `layer.blob` (`layer@k.blob` for the k-th
    layer of a repeated name), as `netdef convert` and training snapshots write them, or keyed
    `module.tensor` (`conv1.weight`), as `netdef compile` and `convert --net` write them."""
    if not _is_safetensors(path):
        return read_caffemodel(path)
    from safetensors import SafetensorError, safe_open
    from safetensors.numpy import load_file

    try:
        tensors = load_file(os.fspath(path))
        with safe_open(os.fspath(path), "np") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise _error(os.fspath(path), f"not a readable safetensors file: {exc}") from None
    if metadata.get("netdef") == OPTIMIZED["netdef"]:
        raise _error(os.fspath(path), "written by `netdef compile` with its inference passes "
                     "(BatchNorm and Scale folded into the convolutions): it fits only the "
                     "model.py beside it; compile with --no-optimize for weights that load, "
                     "run, convert and train can bind")
    by_blob: dict[str, CaffeLayer] = {}
    by_module: dict[str, CaffeLayer] = {}
    for key, array in tensors.items():
        layer_key, dot, index = key.rpartition(".")
        if not dot:
            raise _error(os.fspath(path), f"tensor '{key}' is named neither layer.blob nor "
                         "module.tensor")
        if index.isdigit():  # an empty layer key is a layer with an empty name
            layer = by_blob.setdefault(layer_key,
                                       CaffeLayer(re.sub(r"@\d+$", "", layer_key), ""))
            layer.blobs.append((int(index), array))
        else:
            layer = by_module.setdefault(layer_key, CaffeLayer(layer_key, "", blob_names=[]))
            layer.blobs.append(array)
            layer.blob_names.append(index)
    for layer in by_blob.values():
        layer.blobs = [array for _, array in sorted(layer.blobs, key=lambda pair: pair[0])]
    for layer in (*by_blob.values(), *by_module.values()):
        layer.spans = [None] * len(layer.blobs)
    return [*by_blob.values(), *by_module.values()]


def layer_key(name: str, seen: dict[str, int]) -> str:
    """`name` for a layer name's first use, `name@k` for its k-th (read_weights' inverse);
    `seen` counts uses across calls."""
    seen[name] = seen.get(name, 0) + 1
    return name if seen[name] == 1 else f"{name}@{seen[name]}"


def _is_safetensors(path) -> bool:
    """A little-endian header length, then a JSON object."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 30


def read_blob_file(path: str, limit: int = MAX_SIDE_FILE_BYTES) -> np.ndarray:
    """One BlobProto file (a .binaryproto: mean images, infogain matrices), of at most
    `limit` bytes; OSError for an unreadable, oversized or non-regular file."""
    return _blob(Reader(memoryview(read_bounded(path, limit))))


def _inside(blob: np.ndarray, base: int, size: int) -> bool:
    return blob.flags.c_contiguous and base <= blob.ctypes.data < base + size


def parse_layers(buffer) -> list[CaffeLayer]:
    reader, layers = Reader(buffer), []
    while not reader.at_end():
        number, wire_type = reader.key()
        if number == FIELD.NET_LAYER and wire_type == DELIMITED:
            layers.append(_located(reader, lambda sub, layer: _layer(
                sub, FIELD.NAME, FIELD.TYPE, FIELD.BLOBS, layer)))
        elif number == FIELD.NET_V1_LAYERS and wire_type == DELIMITED:
            layers.append(_located(reader, _v1_layer))
        else:
            reader.skip(wire_type)
    return [layer for layer in layers if layer.blobs]


def _located(reader: Reader, parse) -> CaffeLayer:
    """One layer message parsed by `parse(sub_reader, layer)`; a damaged or cut-off layer
    gives a WireError naming the layer and the blob being read, not just a byte offset."""
    length = reader.varint()
    start, end = reader.position, reader.position + length
    cut = end > reader.end  # the file ends inside this layer: read what is there
    reader.position = min(end, reader.end)
    layer = CaffeLayer("", "")
    try:
        parse(Reader(reader.buffer, start, reader.position), layer)
    except WireError as exc:
        where = f"layer '{layer.name}' ({layer.type or 'no type'}), blob {len(layer.blobs)}"
        if cut:
            raise WireError(f"the file ends (at byte {reader.end}) inside {where}: it is "
                            "truncated") from None
        raise WireError(f"{where}: {exc}") from None
    if cut:
        raise WireError(f"the file ends (at byte {reader.end}) inside layer '{layer.name}' "
                        f"({layer.type or 'no type'}), after its {len(layer.blobs)} blob(s): "
                        "it is truncated")
    return layer


def _layer(reader: Reader, name: int, type_: int, blobs: int,
           layer: CaffeLayer | None = None) -> CaffeLayer:
    layer = layer if layer is not None else CaffeLayer("", "")
    while not reader.at_end():
        number, wire_type = reader.key()
        if number == name and wire_type == DELIMITED:
            layer.name = reader.text()
        elif number == type_ and wire_type == DELIMITED:
            layer.type = reader.text()
        elif number == blobs and wire_type == DELIMITED:
            layer.blobs.append(_blob(reader.sub()))
        else:
            reader.skip(wire_type)
    return layer


def _v1_layer(reader: Reader, layer: CaffeLayer) -> CaffeLayer:
    while not reader.at_end():
        number, wire_type = reader.key()
        if number == FIELD.V1_NAME and wire_type == DELIMITED:
            layer.name = reader.text()
        elif number == FIELD.V1_TYPE and wire_type == VARINT:
            layer.type = _v1_type_name(reader.varint())
        elif number == FIELD.V1_BLOBS and wire_type == DELIMITED:
            layer.blobs.append(_blob(reader.sub()))
        elif number == FIELD.V1_V0_LAYER and wire_type == DELIMITED:  # a V0 layer inside
            inner = _layer(reader.sub(), FIELD.V0_NAME, FIELD.V0_TYPE, FIELD.V0_BLOBS)
            layer.name = layer.name or inner.name
            layer.type = layer.type or inner.type
            layer.blobs += inner.blobs
        else:
            reader.skip(wire_type)
    return layer


def _v1_type_name(value: int) -> str:
    from netdef.proto import netdef_pb2 as pb

    from .upgrade import V1_TYPE_NAMES
    try:
        enum_name = pb.V1LayerParameter.LayerType.Name(value)
    except ValueError:
        return f"V1 type {value}"
    return V1_TYPE_NAMES.get(enum_name, enum_name)


def _blob(reader: Reader) -> np.ndarray:
    legacy = {}
    shape = None
    chunks: list[np.ndarray] = []
    while not reader.at_end():
        number, wire_type = reader.key()
        if number in FIELD.LEGACY_DIMS and wire_type == VARINT:
            legacy[number] = reader.varint()
        elif number == FIELD.SHAPE and wire_type == DELIMITED:
            shape = _shape(reader.sub())
        elif number in (FIELD.DATA, FIELD.DOUBLE_DATA):
            dtype = np.dtype("<f4" if number == FIELD.DATA else "<f8")
            chunks.append(_floats(reader, wire_type, dtype))
        else:
            reader.skip(wire_type)
    data = chunks[0] if len(chunks) == 1 else np.concatenate(chunks) if chunks \
        else np.zeros(0, np.float32)
    if shape is None:
        shape = tuple(legacy.get(i, 1) for i in FIELD.LEGACY_DIMS) if legacy else (data.size,)
    count = math.prod(shape)  # Python integers: dims near 2^64 cannot wrap around to match
    if count != data.size:
        raise WireError(f"a blob of shape {'x'.join(map(str, shape))} holds {data.size} values, "
                        f"not {count}")
    return data.reshape(shape)


def _shape(reader: Reader) -> tuple[int, ...]:
    dims = []
    while not reader.at_end():
        number, wire_type = reader.key()
        if number == FIELD.DIM and wire_type == DELIMITED:
            packed = reader.sub()
            while not packed.at_end():
                dims.append(packed.varint())
        elif number == FIELD.DIM and wire_type == VARINT:
            dims.append(reader.varint())
        else:
            reader.skip(wire_type)
    return tuple(dims)


def _floats(reader: Reader, wire_type: int, dtype: np.dtype) -> np.ndarray:
    if wire_type == DELIMITED:
        start, end = reader.delimited()
        if (end - start) % dtype.itemsize:
            raise WireError(f"packed data of {end - start} bytes is not a whole number of values")
        return np.frombuffer(reader.buffer[start:end], dtype=dtype)
    expected = FIXED32 if dtype.itemsize == 4 else FIXED64
    if wire_type != expected:
        raise WireError(f"blob data with wire type {wire_type}")
    start = reader.position
    reader._advance(dtype.itemsize)
    return np.frombuffer(reader.buffer[start:reader.position], dtype=dtype)


def _looks_like_text(head: bytes) -> bool:
    """Whether a file starts like protobuf text: comments, or a field name then ':' or '{'."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return re.match(r"\s*(#|[A-Za-z_]\w*\s*[:{<])", text) is not None


def _error(path: str, message: str) -> WeightError:
    return WeightError(problems=[Problem(WeightError, message, path, None)])


# ------------------------------------------------------------------ writing
def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _delimited_key(number: int) -> bytes:
    return _varint(number << 3 | DELIMITED)


def _delimited(number: int, payload: bytes) -> bytes:
    return _delimited_key(number) + _varint(len(payload)) + payload


def _blob_bytes(array: np.ndarray) -> list[bytes]:
    dims = b"".join(_varint(int(d)) for d in array.shape)
    shape = _delimited(FIELD.SHAPE, _delimited(FIELD.DIM, dims))
    data = np.ascontiguousarray(array, dtype="<f4").tobytes()
    return [shape, _delimited_key(FIELD.DATA), _varint(len(data)), data]


def _legacy_blob_bytes(array: np.ndarray) -> list[bytes]:
    """V1 blobs: num, channels, height, width (fields 1-4), shorter shapes padded with 1s in front."""
    dims = (1,) * (4 - array.ndim) + tuple(array.shape)
    header = b"".join(_varint(number << 3 | VARINT) + _varint(int(d))
                      for number, d in zip(FIELD.LEGACY_DIMS, dims))
    data = np.ascontiguousarray(array, dtype="<f4").tobytes()
    return [header, _delimited_key(FIELD.DATA), _varint(len(data)), data]


def write_caffemodel(out: BinaryIO, layers: Iterable[tuple[str, str, list[np.ndarray]]],
                     v1: bool = False) -> None:
    """Write (name, type, blobs) layers as a binary NetParameter; `v1` writes the legacy
    `layers` field (the type as the V1 enum) with 4-D blobs."""
    for name, type_name, blobs in layers:
        if v1:
            parts = [_delimited(FIELD.V1_NAME, name.encode()),
                     _varint(FIELD.V1_TYPE << 3 | VARINT) + _varint(_v1_enum(type_name))]
            make_blob, blob_field = _legacy_blob_bytes, FIELD.V1_BLOBS
            layer_field = FIELD.NET_V1_LAYERS
        else:
            parts = [_delimited(FIELD.NAME, name.encode()),
                     _delimited(FIELD.TYPE, type_name.encode())]
            make_blob, blob_field, layer_field = _blob_bytes, FIELD.BLOBS, FIELD.NET_LAYER
        for array in blobs:
            pieces = make_blob(array)
            parts += [_delimited_key(blob_field), _varint(sum(map(len, pieces)))] + pieces
        out.write(_delimited_key(layer_field) + _varint(sum(map(len, parts))))
        for part in parts:
            out.write(part)


def _v1_enum(type_name: str) -> int:
    from netdef.proto import netdef_pb2 as pb

    from .upgrade import V1_TYPE_NAMES
    enum_name = next(key for key, value in V1_TYPE_NAMES.items() if value == type_name)
    return pb.V1LayerParameter.LayerType.Value(enum_name)
