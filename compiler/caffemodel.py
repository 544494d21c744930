"""Writing .caffemodel files (reading: weights.py), in the current or the V1 format.

The wire format is written directly with numpy: a BlobProto's float data is
one packed field, so a 500 MB model is a few large byte copies rather than
hundreds of millions of protobuf appends.
"""
from __future__ import annotations

from typing import BinaryIO, Iterable

import numpy as np

# Field numbers (caffe.proto): NetParameter.layer 100; LayerParameter name 1,
# type 2, blobs 7; BlobProto shape 7, data 5 (packed float); BlobShape dim 1.
_LAYER, _NAME, _TYPE, _BLOBS, _SHAPE, _DATA, _DIM = 100, 1, 2, 7, 7, 5, 1
_LENGTH_DELIMITED = 2


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


def _key(field: int) -> bytes:
    return _varint(field << 3 | _LENGTH_DELIMITED)


def _field(field: int, payload: bytes) -> bytes:
    return _key(field) + _varint(len(payload)) + payload


def _blob(array: np.ndarray) -> list[bytes]:
    dims = b"".join(_varint(int(d)) for d in array.shape)
    shape = _field(_SHAPE, _field(_DIM, dims))
    data = np.ascontiguousarray(array, dtype="<f4").tobytes()
    return [shape, _key(_DATA), _varint(len(data)), data]


def _legacy_blob(array: np.ndarray) -> list[bytes]:
    """V1 blobs: num, channels, height, width (fields 1-4), shorter shapes padded with 1s in front."""
    dims = (1,) * (4 - array.ndim) + tuple(array.shape)
    header = b"".join(_varint(field << 3) + _varint(int(d)) for field, d in zip((1, 2, 3, 4), dims))
    data = np.ascontiguousarray(array, dtype="<f4").tobytes()
    return [header, _key(_DATA), _varint(len(data)), data]


def write_caffemodel(out: BinaryIO, layers: Iterable[tuple[str, str, list[np.ndarray]]],
                     v1: bool = False) -> None:
    """Write (name, type, blobs) layers as a binary NetParameter; `v1` writes the legacy
    `layers` field (name 4, type 5 as the V1 enum, blobs 6) with 4-D blobs."""
    for name, type_name, blobs in layers:
        if v1:
            parts = [_field(4, name.encode()), _varint(5 << 3) + _varint(_v1_enum(type_name))]
            make_blob, blob_field, layer_field = _legacy_blob, 6, 2
        else:
            parts = [_field(_NAME, name.encode()), _field(_TYPE, type_name.encode())]
            make_blob, blob_field, layer_field = _blob, _BLOBS, _LAYER
        for array in blobs:
            pieces = make_blob(array)
            parts += [_key(blob_field), _varint(sum(map(len, pieces)))] + pieces
        out.write(_key(layer_field) + _varint(sum(map(len, parts))))
        for part in parts:
            out.write(part)


def _v1_enum(type_name: str) -> int:
    from netdef.proto import netdef_pb2 as pb

    from .upgrade import V1_TYPE_NAMES
    enum_name = next(key for key, value in V1_TYPE_NAMES.items() if value == type_name)
    return pb.V1LayerParameter.LayerType.Value(enum_name)
