"""Does reading keep up with training? Images per second of a `Data` layer's reader next to
those of the training step it feeds, for two BVLC recipes on CPU:

- LeNet (examples/lenet: raw 1 x 28 x 28 Datums, batch 64);
- CaffeNet (BVLC's bvlc_reference_caffenet/train_val.prototxt with its sources and mean file
  pointed at a generated database: 256 JPEG-encoded 256 x 256 images, random 227 crops,
  mirror, the mean image from compute-image-mean; batch 32 instead of 256 on CPU).

For each: the reader alone (batches read one after another), the step with the reader on its
background thread (as `netdef train` runs), and the step with reading in line before it.

    python bench/bench_data.py [--steps 8]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import netdef.training.train as train_module
from netdef.training.data import Prefetching

ROOT = Path(__file__).resolve().parent.parent
CAFFENET = ROOT.parent / "shared" / "corpus" / "BVLC+caffe" / "models" / \
    "bvlc_reference_caffenet" / "train_val.prototxt"


def netdef(*args, cwd) -> None:
    subprocess.run([sys.executable, "-m", "netdef", *map(str, args)], check=True, cwd=cwd,
                   stdout=subprocess.DEVNULL)


def lenet_solver() -> Path:
    example = ROOT / "examples" / "lenet"
    if not (example / "work" / "digits_test_lmdb").exists():
        subprocess.run([sys.executable, str(example / "lenet.py"), "--max-iter", "1"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return example / "lenet_solver.prototxt"


def caffenet_solver(folder: Path) -> Path:
    """CaffeNet's train_val with its LMDB, mean file and batch pointed at generated data."""
    rng = np.random.default_rng(0)
    lines = []
    for index in range(256):  # smooth random pictures: JPEG sizes like photographs'
        small = rng.integers(0, 256, (16, 16, 3), np.uint8)
        Image.fromarray(small).resize((256, 256), Image.BICUBIC).save(folder / f"{index}.jpg",
                                                                      quality=90)
        lines.append(f"{index}.jpg {index % 1000}")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    netdef("convert-imageset", "--encoded", f"{folder}/", folder / "list.txt", folder / "db",
           cwd=folder)
    netdef("compute-image-mean", folder / "db", folder / "mean.binaryproto", cwd=folder)
    text = CAFFENET.read_text()
    text = re.sub(r'source: "[^"]*"', f'source: "{folder}/db"', text)
    text = re.sub(r'mean_file: "[^"]*"', f'mean_file: "{folder}/mean.binaryproto"', text)
    text = re.sub(r"batch_size: \d+", "batch_size: 32", text)
    (folder / "train_val.prototxt").write_text(text)
    solver = folder / "solver.prototxt"
    solver.write_text(f'net: "{folder}/train_val.prototxt"\nbase_lr: 0.001\nlr_policy: "fixed"\n'
                      f'momentum: 0.9\nmax_iter: 1000\nsnapshot_prefix: "{folder}/snap"\n')
    return solver


def measure(name: str, solver: Path, steps: int) -> str:
    rows = []
    for label, prefetch in (("reader on its thread", True), ("reading in line", False)):
        with contextlib.ExitStack() as stack:
            if not prefetch:  # feed the step straight from the source, as before
                stack.enter_context(_patched(train_module, "Prefetching", lambda source: source))
            trainer = train_module.make_trainer(str(solver), log=False, progress=False)
            source, _, _ = trainer.train_net.feeds[0]
            batch = source.batch_size
            trainer.step()  # warm
            start = time.perf_counter()
            for _ in range(steps):
                trainer.step()
            step = (time.perf_counter() - start) / steps
            rows.append(f"| {name} | step, {label} | {batch / step:.0f} | {step * 1000:.0f} |")
    reader = source.source if isinstance(source, Prefetching) else source
    start = time.perf_counter()
    for index in range(steps):
        reader.batch(1000 + index)
    read = (time.perf_counter() - start) / steps
    rows.insert(0, f"| {name} | reader alone | {batch / read:.0f} | {read * 1000:.0f} |")
    return "\n".join(rows)


@contextlib.contextmanager
def _patched(owner, attribute, value):
    saved = getattr(owner, attribute)
    setattr(owner, attribute, value)
    try:
        yield
    finally:
        setattr(owner, attribute, saved)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; mean of {args.steps} steps")
    print("| net | what | images/s | ms per batch |")
    print("|---|---|---|---|")
    print(measure("LeNet, batch 64", lenet_solver(), args.steps))
    with tempfile.TemporaryDirectory() as folder:
        print(measure("CaffeNet, batch 32", caffenet_solver(Path(folder)), args.steps))


if __name__ == "__main__":
    main()
