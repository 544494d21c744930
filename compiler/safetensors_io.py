"""Writing safetensors files as a stream: 8-byte header size, JSON header, raw data.

Tensors go out one at a time, so a large model never sits twice in memory; data
that already lies in another file (a caffemodel's packed float32 blobs) is copied
file to file by the kernel (os.copy_file_range), never entering Python.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .progress import byte_progress

FileSpan = tuple  # (source file descriptor, offset, bytes)


def write_safetensors(path, tensors: dict, spans: dict[str, FileSpan] | None = None,
                      metadata: dict[str, str] | None = None) -> None:
    spans = spans or {}
    header, offset, pieces = ({"__metadata__": metadata} if metadata else {}), 0, []
    for name, value in tensors.items():
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        nbytes = array.size * 4
        header[name] = {"dtype": "F32", "shape": list(array.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
        pieces.append((name, array))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as handle, byte_progress(offset, f"writing {path}") as progress:
        handle.write(len(text).to_bytes(8, "little"))
        handle.write(text)
        for name, array in pieces:
            if name in spans:
                handle.flush()
                _copy_range(spans[name], handle.fileno())
            elif array.size:
                handle.write(memoryview(np.ascontiguousarray(array, dtype="<f4")).cast("B"))
            progress.update(array.size * 4)


def _copy_range(span: FileSpan, destination: int) -> None:
    source, offset, remaining = span
    while remaining:
        try:
            copied = os.copy_file_range(source, destination, remaining, offset)
        except OSError:
            copied = 0
        if copied == 0:  # another filesystem or no support: plain reads
            copied = os.write(destination, os.pread(source, min(remaining, 64 << 20), offset))
        offset += copied
        remaining -= copied
