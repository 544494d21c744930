"""LeNet on real handwritten digits, offline, with Caffe's own recipe run by netdef.

1. The digits: scikit-learn's bundled 8 x 8 digits (1,797 scans of 43 writers' digits,
   values 0..16), read from the scikit-learn wheel, which pip fetches into the cache
   (~/.cache/netdef, or $NETDEF_CACHE) without installing it. Each becomes a 28 x 28 PNG
   (0..255, upscaled bilinearly), as MNIST's are; a seeded split keeps 1,500 for training.
2. `netdef convert-imageset` writes them, with list files, to two LMDBs in work/.
3. `netdef train lenet_solver.prototxt`: BVLC's solver and net, edited only in their paths.
   The TEST net prints its accuracy every 500 iterations.

    make lenet                                   # or, from this folder:
    python lenet.py [--max-iter N]
"""
from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("NETDEF_CACHE", Path.home() / ".cache" / "netdef"))
SKLEARN = "scikit-learn==1.9.1"
TRAIN_COUNT = 1500


def digits() -> tuple[np.ndarray, np.ndarray]:
    """(1797 x 8 x 8 values 0..16, 1797 labels) from the scikit-learn wheel."""
    wheels = sorted(CACHE.glob("scikit_learn-1.9.1-*.whl"))
    if not wheels:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary",
                        ":all:", SKLEARN, "-d", str(CACHE)], check=True)
        wheels = sorted(CACHE.glob("scikit_learn-1.9.1-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        table = gzip.decompress(wheel.read("sklearn/datasets/data/digits.csv.gz")).decode()
    rows = np.array([line.split(",") for line in table.split()], dtype=np.int64)
    return rows[:, :64].reshape(-1, 8, 8), rows[:, 64]


def write_images(work: Path) -> None:
    """28 x 28 PNGs in work/digits/, and train.txt / test.txt of `file label` lines."""
    images, labels = digits()
    order = np.random.default_rng(0).permutation(len(labels))
    (work / "digits").mkdir(parents=True, exist_ok=True)
    lines = {"train": [], "test": []}
    for rank, index in enumerate(order):
        name = f"digits/{index:04d}.png"
        pixels = np.clip(images[index] * 16, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).resize((28, 28), Image.BILINEAR).save(work / name)
        lines["train" if rank < TRAIN_COUNT else "test"].append(f"{name} {labels[index]}")
    for split, entries in lines.items():
        (work / f"{split}.txt").write_text("\n".join(entries) + "\n")


def netdef(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "netdef", *args], check=True, cwd=HERE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-iter", type=int, help="stop before the solver's 10,000")
    args = parser.parse_args()
    work = HERE / "work"
    if not (work / "digits_test_lmdb").exists():
        write_images(work)
        for split in ("train", "test"):
            netdef("convert-imageset", "--gray", "work/", f"work/{split}.txt",
                   f"work/digits_{split}_lmdb")
    netdef("train", "lenet_solver.prototxt", *(["--max-iter", str(args.max_iter)]
                                               if args.max_iter else []))


if __name__ == "__main__":
    main()
