"""What the region net's proposals are worth: their pixel masks, the recall
metrics (R@x, ABO, AR, AR@k), and the pictures `netdef run` draws.

A kept region (pathway p, cell (i, j)) is the w x w logits of that cell, upsampled
bilinearly by the pathway's stride S (half-pixel alignment, as the loss does) over its
window [S(i-h), S(i+h)) per axis, h = w / 2; its mask is where the upsampled logits are
positive. Pixels outside the image belong to no mask.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IOU_STEPS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))  # AR averages R@x over these


@dataclass
class Proposals:
    """One image's regions: every pathway's logits (w^2 x Hg x Wg) and the kept ones,
    K x 4 (pathway, row, column, score) in score order."""
    logits: list
    strides: list
    windows: list
    kept: torch.Tensor
    size: tuple  # image height, width in pixels

    def masks(self, indices=None, chunk_pixels: int = 1 << 24):
        """Yield (kept indices, tops, lefts, masks K x side x side) a pathway at a time."""
        kept = self.kept if indices is None else self.kept[indices]
        order = torch.arange(len(self.kept)) if indices is None else torch.as_tensor(indices)
        for p, (logits, s, w) in enumerate(zip(self.logits, self.strides, self.windows)):
            mine = (kept[:, 0] == p).nonzero()[:, 0]
            step = max(1, chunk_pixels // (w * s) ** 2)
            for start in range(0, len(mine), step):
                rows_of = mine[start:start + step]
                i, j = kept[rows_of, 1].long(), kept[rows_of, 2].long()
                region = logits[:, i, j].T.reshape(-1, 1, w, w).float()
                up = F.interpolate(region, scale_factor=s, mode="bilinear",
                                   align_corners=False)[:, 0]
                yield order[rows_of], s * (i - w // 2), s * (j - w // 2), up > 0


def overlaps(proposals: Proposals, segments, ignore_label: int | None = 255):
    """IoU of every kept region (rows, score order) with every segment (columns, ids in
    ascending order), and those ids. Segment 0 is no segment; ignored pixels count for
    neither side."""
    segments = torch.as_tensor(np.asarray(segments)).long()
    valid = segments >= 0 if ignore_label is None else segments != ignore_label
    labels = torch.where(valid, segments, torch.full_like(segments, -1))
    ids = torch.unique(labels[labels > 0])
    code = torch.full((int(labels.max().clamp_min(0)) + 2,), 0, dtype=torch.long)
    code[ids] = torch.arange(1, len(ids) + 1)  # 0: no segment, G+1: ignored/outside
    coded = torch.where(labels >= 0, code[labels.clamp_min(0)], len(ids) + 1)
    gt_areas = torch.bincount(coded.reshape(-1), minlength=len(ids) + 2)[1:len(ids) + 1]
    ious = torch.zeros(len(proposals.kept), len(ids), dtype=torch.float64)
    for rows, tops, lefts, masks in proposals.masks():
        side = masks.shape[1]
        window = _windows(coded, tops, lefts, side, outside=len(ids) + 1)
        counted = masks & (window <= len(ids))
        bins = torch.where(counted, window, len(ids) + 1) + (len(ids) + 2) * torch.arange(
            len(rows))[:, None, None]
        hits = torch.bincount(bins.reshape(-1), minlength=len(rows) * (len(ids) + 2))
        inter = hits.reshape(len(rows), -1)[:, 1:len(ids) + 1].double()
        area = counted.sum((1, 2)).double()[:, None]
        ious[rows] = inter / (area + gt_areas.double()[None] - inter).clamp_min(1)
    return ious, ids


def _windows(coded, tops, lefts, side, outside):
    """coded[top + y, left + x] for every window, `outside` beyond the image."""
    height, width = coded.shape
    y = tops[:, None] + torch.arange(side)[None]
    x = lefts[:, None] + torch.arange(side)[None]
    inside = ((y >= 0) & (y < height))[:, :, None] & ((x >= 0) & (x < width))[:, None, :]
    values = coded[y.clamp(0, height - 1)[:, :, None], x.clamp(0, width - 1)[:, None, :]]
    return torch.where(inside, values, outside)


def best_overlaps(ious: torch.Tensor, ks=()) -> dict:
    """Each segment's best IoU over all kept regions (key None) and over the top k."""
    best = {None: _column_max(ious)}
    for k in ks:
        best[k] = _column_max(ious[:k])
    return best


def _column_max(ious):
    return ious.max(0).values if len(ious) else torch.zeros(ious.shape[1], dtype=ious.dtype)


def recall_metrics(best: dict) -> dict:
    """B7's numbers, as fractions, from best_overlaps pooled over images: R@50, R@70, ABO
    and AR (mean of R@x for x = 0.50, 0.55, ..., 0.95) over all kept regions, AR@k for the
    top-k ones; `segments` is how many ground-truth segments they average over."""
    every = best[None].double()
    if not len(every):
        return {"segments": 0}
    found = {"segments": len(every), "R@50": _recall(every, 0.5), "R@70": _recall(every, 0.7),
             "ABO": float(every.mean()), "AR": _average_recall(every)}
    for k, values in best.items():
        if k is not None:
            found[f"AR@{k}"] = _average_recall(values.double())
    return found


def _recall(best, threshold):
    return float((best >= threshold - 1e-12).double().mean())


def _average_recall(best):
    return float(np.mean([_recall(best, x) for x in IOU_STEPS]))


def evaluate(pairs, ks=(10, 100, 1000), ignore_label: int | None = 255) -> dict:
    """Recall metrics over (Proposals, segments) pairs, ground truth pooled over images."""
    pooled: dict = {}
    for proposals, segments in pairs:
        ious, _ = overlaps(proposals, segments, ignore_label)
        for k, values in best_overlaps(ious, ks).items():
            pooled.setdefault(k, []).append(values)
    return recall_metrics({k: torch.cat(v) for k, v in pooled.items()})


@contextlib.contextmanager
def capture(module: torch.nn.Module, size=None):
    """Record the Proposals of every image that goes through the module's RegionNMS
    layers while the context is open. `size` is the images' (height, width); by default
    the first pathway's grid times its stride."""
    from .runtime.regions import RegionNMS

    found: list[Proposals] = []

    def record(nms, inputs, output):
        for n in range(inputs[0].shape[0]):
            kept = output[output[:, 0] == n][:, 1:].cpu()
            logits = [q[n].detach().cpu() for q in inputs]
            found.append(Proposals(logits, nms.strides, nms.windows, kept,
                                   size or _grid_size(inputs[0], nms.strides[0])))

    hooks = [m.register_forward_hook(record) for m in module.modules()
             if isinstance(m, RegionNMS)]
    try:
        yield found
    finally:
        for hook in hooks:
            hook.remove()


def _grid_size(logits, stride):
    return logits.shape[2] * stride, logits.shape[3] * stride


# ------------------------------------------------------------------ pictures
PANEL_GAP = 8


def pathway_picture(image: np.ndarray, proposals: Proposals):
    """Figure 4.5's view: one panel per pathway, each showing a tiling of its regions (every
    w-th cell per axis, so the windows neither overlap nor leave gaps) as coloured masks
    over the dimmed image, each window outlined."""
    from PIL import Image, ImageDraw

    panels = []
    for p, (s, w) in enumerate(zip(proposals.strides, proposals.windows)):
        rows, columns = (_tiling(n, w) for n in proposals.logits[p].shape[1:])
        grid = torch.cartesian_prod(rows, columns).float()
        tiled = Proposals(proposals.logits, proposals.strides, proposals.windows,
                          torch.cat([torch.full((len(grid), 1), float(p)), grid,
                                     torch.zeros(len(grid), 1)], 1), proposals.size)
        panel = _overlay(image, tiled, range(len(grid)))
        ImageDraw.Draw(panel).text((4, 2), f"pathway {p + 1}: stride {s}, window {w}",
                                   fill=(255, 255, 255))
        panels.append(panel)
    return _side_by_side(panels, Image)


def kept_picture(image: np.ndarray, proposals: Proposals, count: int = 20):
    """The `count` best regions left after NMS, coloured masks with outlined windows."""
    from PIL import ImageDraw

    shown = range(min(count, len(proposals.kept)))
    picture = _overlay(image, proposals, shown)
    ImageDraw.Draw(picture).text((4, 2), f"{len(shown)} of {len(proposals.kept)} kept regions",
                                 fill=(255, 255, 255))
    return picture


def _tiling(cells: int, window: int) -> torch.Tensor:
    """Every window-th cell, starting half a window in (or at the last cell of a grid
    smaller than that)."""
    return torch.arange(min(window // 2, cells - 1), cells, window)


def _overlay(image, proposals: Proposals, shown):
    """The dimmed image with the masks of kept regions `shown` painted half-opaque in
    distinct colours and their windows outlined."""
    from PIL import Image, ImageDraw

    height, width = proposals.size
    canvas = image.astype(np.float32) * 0.5
    boxes = []
    for rows, tops, lefts, masks in proposals.masks(list(shown)):
        for row, top, left, mask in zip(rows.tolist(), tops.tolist(), lefts.tolist(), masks):
            colour = _colour(row)
            y0, x0 = max(top, 0), max(left, 0)
            y1, x1 = min(top + mask.shape[0], height), min(left + mask.shape[1], width)
            if y1 <= y0 or x1 <= x0:
                continue
            inside = mask[y0 - top:y1 - top, x0 - left:x1 - left].numpy()
            patch = canvas[y0:y1, x0:x1]
            patch[inside] = 0.5 * patch[inside] + 0.5 * colour
            boxes.append((x0, y0, x1 - 1, y1 - 1, tuple(int(c) for c in colour)))
    picture = Image.fromarray(np.clip(canvas, 0, 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for *box, colour in boxes:
        draw.rectangle(box, outline=colour)
    return picture


def _colour(index: int) -> np.ndarray:
    """Well-separated hues: the golden-ratio walk around the colour wheel."""
    import colorsys

    hue = (index * 0.618033988749895) % 1.0
    return np.asarray(colorsys.hsv_to_rgb(hue, 0.9, 1.0), np.float32) * 255


def _side_by_side(panels, Image):
    width = sum(p.width for p in panels) + PANEL_GAP * (len(panels) - 1)
    sheet = Image.new("RGB", (width, max(p.height for p in panels)), (255, 255, 255))
    x = 0
    for panel in panels:
        sheet.paste(panel, (x, 0))
        x += panel.width + PANEL_GAP
    return sheet
