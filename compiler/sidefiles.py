"""Reading files that a model file names (mean_file, infogain matrices, image lists, nets named
by a solver): regular files only, their size checked before anything is read, so a path such as
/dev/zero or a FIFO gives an error instead of an endless read."""
from __future__ import annotations

import errno
import os
import stat

MAX_SIDE_FILE_BYTES = 1 << 30  # no mean image, matrix or list file comes near this


def read_bounded(path, limit: int = MAX_SIDE_FILE_BYTES) -> bytes:
    """The whole file; OSError (with strerror) for a non-regular or oversized file."""
    with open(path, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        if info.st_size > limit:
            raise OSError(errno.EFBIG, f"{info.st_size} bytes, more than the {limit} allowed",
                          os.fspath(path))
        data = handle.read(limit + 1)
    if len(data) > limit:  # it grew while being read
        raise OSError(errno.EFBIG, f"more than the {limit} bytes allowed", os.fspath(path))
    return data


def read_lines(path, limit: int = MAX_SIDE_FILE_BYTES) -> list[str]:
    """The file's non-blank lines, stripped (list files: `path label` per line)."""
    text = read_bounded(path, limit).decode("utf-8", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip()]
