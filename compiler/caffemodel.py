"""Writing .caffemodel files (the reader arrives with weight loading).

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


def write_caffemodel(out: BinaryIO, layers: Iterable[tuple[str, str, list[np.ndarray]]]) -> None:
    """Write (name, type, blobs) layers as a binary NetParameter."""
    for name, type_name, blobs in layers:
        parts = [_field(_NAME, name.encode()), _field(_TYPE, type_name.encode())]
        for array in blobs:
            pieces = _blob(array)
            parts += [_key(_BLOBS), _varint(sum(map(len, pieces)))] + pieces
        out.write(_key(_LAYER) + _varint(sum(map(len, parts))))
        for part in parts:
            out.write(part)
