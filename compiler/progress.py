"""A byte progress bar for weight files over 100 MB (tqdm, on terminals only)."""
from __future__ import annotations

import contextlib

LARGE = 100 * 2 ** 20
ALWAYS = False  # tests: show the bar even when stderr is not a terminal


class _Silent:
    def update(self, count: int) -> None:
        pass


def byte_progress(total: int, description: str):
    """A context manager giving an object with `update(bytes)`."""
    if total <= LARGE:
        return contextlib.nullcontext(_Silent())
    from tqdm import tqdm
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=description,
                disable=False if ALWAYS else None, leave=False, mininterval=0.25)
