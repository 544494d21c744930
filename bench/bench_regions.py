"""The region net (issue 6): RegionNMS scaling, and models/region_net.prototxt at 640x480.

1. NMS alone on logits of the five pathways (Table 4.1's strides and windows) at 1x, 4x and
   16x the regions (image sides doubling): "structured" logits, each region predicting the
   segment under its centre on a synthetic scene, tiled to the larger sizes so that the
   content per region stays the same (neighbours agree, so NMS suppresses much, as with a
   trained net), and i.i.d. "random" logits (nothing overlaps enough: every region
   survives, every bound is loose: the worst case). Peer: greedy NMS the obvious way, one
   dense IoU matrix of all pixel masks (a matmul), at the smallest size it fits in memory.
2. The whole net, TEST phase (five pathways + NMS), 640x480, seeded fillers, on this
   machine's device(s); NMS's share measured on the logits the run produced. Peer: OpenCV
   4.12's Caffe importer on the part it can run (VGG-16 through fc6 and the five pathways'
   region convolutions), against netdef on that same part.

Run: python bench/bench_regions.py [--repeat N] [--skip-net]   (prints markdown tables)
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import netdef
from netdef.compiler.analysis import check_net
from google.protobuf import text_format
from netdef.proposals import capture
from netdef.runtime.regions import region_nms
from timing import timed  # bench/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "region_net.prototxt"
STRIDES, WINDOWS = [2, 4, 8, 16, 32], [14, 14, 18, 18, 18]


def scene(height, width, seed=0):
    """Segment ids: a few dozen random rectangles, later ones on top."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((height, width), np.int64)
    for label in range(1, 1 + max(4, height * width // 12000)):
        h, w = rng.integers(height // 12, height // 3), rng.integers(width // 12, width // 3)
        y, x = rng.integers(0, height - h), rng.integers(0, width - w)
        labels[y:y + h, x:x + w] = label
    return torch.from_numpy(labels)


def tiled(labels, height, width):
    """The scene repeated to height x width: more regions, the same content per region."""
    rows, columns = height // labels.shape[0], width // labels.shape[1]
    return labels.repeat(rows, columns)


def structured_logits(labels, seed=0):
    """Per pathway, region (i, j)'s cell (a, b) is +3 when that cell's centre lies in the
    segment under the region's centre, else -3; plus N(0, 1) noise."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for s, w in zip(STRIDES, WINDOWS):
        grid = labels[s // 2::s, s // 2::s]
        height, width = grid.shape
        h = w // 2
        padded = torch.nn.functional.pad(grid, (h, h, h, h), value=-1)
        a = torch.arange(w)
        rows = torch.arange(height)[:, None, None, None] + a[None, None, :, None]
        columns = torch.arange(width)[None, :, None, None] + a[None, None, None, :]
        same = (padded[rows, columns] == grid[:, :, None, None]) & (grid[:, :, None, None] > 0)
        logits = torch.where(same, 3.0, -3.0) + torch.randn(same.shape, generator=generator)
        out.append(logits.permute(2, 3, 0, 1).reshape(w * w, height, width).contiguous())
    return out


def random_logits(height, width, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [2 * torch.randn(w * w, height // s, width // s, generator=generator) - 0.3
            for s, w in zip(STRIDES, WINDOWS)]


def dense_nms(logits, threshold):
    """The obvious greedy NMS: every region's pixel mask, one IoU matrix, a greedy scan."""
    masks, scores = [], []
    height, width = logits[0].shape[1] * STRIDES[0], logits[0].shape[2] * STRIDES[0]
    for q, s, w in zip(logits, STRIDES, WINDOWS):
        h, (rows, columns) = w // 2, q.shape[1:]
        probability = torch.sigmoid(q)
        cells = (probability > 0.5).float().reshape(w, w, rows, columns)
        canvas = torch.zeros(rows, columns, (rows + w) * s, (columns + w) * s)
        up = cells.permute(2, 3, 0, 1).repeat_interleave(s, 2).repeat_interleave(s, 3)
        for i in range(rows):  # each window (origin S(i - h)) on a canvas padded by h cells
            for j in range(columns):
                canvas[i, j, s * i:s * i + w * s, s * j:s * j + w * s] = up[i, j]
        margin = h * s
        masks.append(canvas[:, :, margin:margin + height, margin:margin + width]
                     .reshape(rows * columns, -1))
        count = cells.sum((0, 1)).reshape(-1)
        scores.append(torch.where(count > 0, (probability * (probability > 0.5)).sum(0)
                                  .reshape(-1) / count.clamp_min(1), 0.0))
    masks, scores = torch.cat(masks), torch.cat(scores)
    inter = masks @ masks.T
    areas = masks.sum(1)
    iou = inter / (areas[:, None] + areas[None, :] - inter).clamp_min(1)
    suppressed = scores <= 0
    kept = []
    for index in torch.sort(scores, descending=True, stable=True).indices.tolist():
        if not suppressed[index]:
            kept.append(index)
            suppressed |= iou[index] > threshold
    return kept


def nms_table(repeat):
    print("| logits | image | regions | kept | netdef ms (best / median) | x previous size |")
    print("|---|---|---|---|---|---|")
    base = scene(240, 320)
    for kind in ("structured", "random"):
        previous = None
        for height, width in ((240, 320), (480, 640), (960, 1280)):
            logits = (structured_logits(tiled(base, height, width)) if kind == "structured"
                      else random_logits(height, width))
            regions = sum(q.shape[1] * q.shape[2] for q in logits)
            kept = len(region_nms(logits, STRIDES, WINDOWS, 0.5))
            best, median = timed(lambda: region_nms(logits, STRIDES, WINDOWS, 0.5), repeat)
            ratio = f"{median / previous:.2f}x" if previous else "-"
            print(f"| {kind} | {width}x{height} | {regions:,} | {kept:,} | "
                  f"{best:.0f} / {median:.0f} | {ratio} |")
            previous = median
    print()
    logits = structured_logits(scene(96, 128))
    ours = region_nms(logits, STRIDES, WINDOWS, 0.5)
    theirs = dense_nms(logits, 0.5)
    assert len(ours) == len(theirs), "the peer disagrees"
    _, peer = timed(lambda: dense_nms(logits, 0.5), max(1, repeat // 2))
    _, mine = timed(lambda: region_nms(logits, STRIDES, WINDOWS, 0.5), repeat)
    regions = sum(q.shape[1] * q.shape[2] for q in logits)
    print(f"| peer (dense IoU matrix), 128x96, {regions:,} regions, same {len(ours)} kept | "
          f"netdef {mine:.1f} ms | peer {peer:.1f} ms | ratio {mine / peer:.3f} |")
    print()


def convolutional_part(text: str) -> str:
    """The TEST net without the layers OpenCV cannot run: RegionTranspose, the mask
    convolutions over the transposes, RegionNMS (OpenCV ignores phases: TRAIN layers go)."""
    parsed = netdef.parse(text)
    dropped = {"RegionTranspose", "RegionNMS"}
    transposed = {top for layer in parsed.layer if layer.type in dropped for top in layer.top}
    keep = [layer for layer in parsed.layer
            if layer.type not in dropped and not set(layer.bottom) & transposed
            and not any(rule.phase == 0 and rule.HasField("phase") for rule in layer.include)]
    del parsed.layer[:]
    parsed.layer.extend(keep)
    return text_format.MessageToString(parsed)


def net_table(repeat):
    import cv2

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_forward import random_caffemodel

    image = torch.from_numpy(np.random.default_rng(0).uniform(-120, 120, (1, 3, 480, 640))
                             .astype(np.float32))
    module = netdef.load(MODEL, phase="TEST")
    with torch.no_grad(), capture(module, (480, 640)) as found:
        outputs = module(data=image)
    logits = found[0].logits
    with torch.no_grad():
        best, median = timed(lambda: module(data=image), repeat)
    _, nms = timed(lambda: region_nms(logits, STRIDES, WINDOWS, 0.5), repeat)
    print(f"| models/region_net.prototxt TEST, 640x480, CPU | {best:.0f} / {median:.0f} ms | "
          f"of which NMS {nms:.0f} ms ({len(outputs['regions']):,} kept of 102,300) |")

    part = convolutional_part(MODEL.read_text())
    net, problems = check_net(part, phase="TEST")
    caffemodel, _ = random_caffemodel(net)
    with tempfile.TemporaryDirectory() as folder:
        prototxt, weights = Path(folder) / "part.prototxt", Path(folder) / "part.caffemodel"
        prototxt.write_text(part)
        weights.write_bytes(caffemodel)
        ours = netdef.load(str(prototxt), str(weights))
        cv_net = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
        outputs = [name for name in ours(data=image)]

        def opencv():
            cv_net.setInput(image.numpy())
            return cv_net.forward(outputs)

        with torch.no_grad():
            _, mine = timed(lambda: ours(data=image), repeat)
        _, theirs = timed(opencv, repeat)
    print(f"| backbone + region convolutions (what OpenCV runs), 640x480 | netdef {mine:.0f} ms | "
          f"OpenCV {theirs:.0f} ms | ratio {mine / theirs:.2f} |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-net", action="store_true")
    parser.add_argument("--skip-nms", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, Python {sys.version.split()[0]}")
    print()
    if not args.skip_nms:
        nms_table(args.repeat)
    if not args.skip_net:
        net_table(args.repeat)


if __name__ == "__main__":
    main()
