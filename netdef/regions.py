"""The five-pathway region net's own layers (reference-nets.md B).

A pathway's regions sit on its feature grid, stride S pixels per cell. Region (i, j) predicts a
w x w mask of cells around its cell: channel a*w + b of an N x w^2 x H x W blob holds the
offset (a - h, b - h), h = w / 2, so the region's window covers pixels [S(i-h), S(i+h)) on
each axis.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RegionTranspose(nn.Module):
    """p^T(x, D) = p(x + D, -D): every output plane is an input plane shifted by its offset
    (B3). In the layout, pT[(a, b), i, j] = p[(w-a, w-b), i+a-h, j+b-h]; it is 0 where -D
    leaves the window (a = 0 or b = 0) or x + D leaves the grid. With `padded`, the input
    is computed on the grid padded by h cells on every side, so border regions keep data.
    A partial involution: its adjoint is itself, which autograd's gather backward gives."""

    def __init__(self, window: int, padded: bool = False):
        super().__init__()
        self.window, self.padded = window, padded

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        h = self.window // 2
        if not self.padded:
            p = F.pad(p, (h, h, h, h))  # reading outside the grid gives 0
        height, width = p.shape[2] - 2 * h, p.shape[3] - 2 * h
        channel, rows, columns, kept = self._indices(height, width, p.device)
        out = p[:, channel, rows, columns]  # N x w^2 x H x W, one gather
        return out * kept.to(out.dtype)

    def _indices(self, height, width, device):
        w = self.window
        a = torch.arange(w, device=device).repeat_interleave(w)  # channel k = a*w + b
        b = torch.arange(w, device=device).repeat(w)
        kept = ((a > 0) & (b > 0))[:, None, None]
        source = ((w - a) % w) * w + (w - b) % w  # any valid channel where a or b is 0
        rows = a[:, None, None] + torch.arange(height, device=device)[None, :, None]
        columns = b[:, None, None] + torch.arange(width, device=device)[None, None, :]
        return source[:, None, None], rows, columns, kept


class RegionLogisticLoss(nn.Module):
    """Sigmoid cross-entropy of every region's mask against its segment (B5). Each region's
    w x w logits are upsampled bilinearly by S (half-pixel alignment) to its window, a few
    regions at a time; the gradient is taken chunk by chunk in the forward pass, so memory
    stays bounded by `chunk_pixels` whatever the image size.

    Targets: segments is N x 1 x H x W with segment ids (0 = no segment; `ignore_label`
    ignored). The region at cell (i, j) has centre pixel (S i + S/2, S j + S/2); it is left
    out if the centre is in no segment or ignored. Window pixel r is positive when it is in
    the centre's segment; pixels outside the image or ignored do not count. When the
    centre's segment does not fit inside the window, the target is all negative
    (cut_off="negative", the dissertation's "inhibits cut-off regions") or the region is
    left out ("ignore"). The loss is the mean over kept regions of each region's mean over
    its counted pixels."""

    def __init__(self, stride: int, window: int, cut_off: str = "negative",
                 ignore_label: int | None = None, chunk_pixels: int = 1 << 22):
        super().__init__()
        self.stride, self.window, self.cut_off = stride, window, cut_off
        self.ignore_label, self.chunk_pixels = ignore_label, chunk_pixels

    def forward(self, logits: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        return _RegionLoss.apply(logits, segments, self)

    def loss_and_gradient(self, logits: torch.Tensor, segments: torch.Tensor):
        total = logits.new_zeros(())
        gradient = torch.zeros_like(logits)
        kept = 0
        for n in range(logits.shape[0]):
            targets = self._targets(segments[n, 0], logits.shape[2:])
            kept += int(targets.kept.sum())
            total = total + self._image(logits[n], gradient[n], targets)
        kept = max(kept, 1)
        return total / kept, gradient / kept

    def _image(self, logits, gradient, targets):
        w, side = self.window, self.window * self.stride
        cells = targets.kept.nonzero()  # regions in the loss, (i, j)
        chunk = max(1, self.chunk_pixels // (side * side))
        total = logits.new_zeros(())
        for start in range(0, len(cells), chunk):
            i, j = cells[start:start + chunk].unbind(1)
            with torch.enable_grad():
                region = logits[:, i, j].T.reshape(-1, 1, w, w).detach().requires_grad_()
                up = F.interpolate(region, scale_factor=self.stride, mode="bilinear",
                                   align_corners=False)[:, 0]
                target, counted = targets.window(i, j)
                loss = F.binary_cross_entropy_with_logits(up, target.to(up.dtype),
                                                          reduction="none")
                counted = counted.to(up.dtype)
                loss = ((loss * counted).sum((1, 2)) / counted.sum((1, 2)).clamp_min(1)).sum()
                (grad,) = torch.autograd.grad(loss, region)
            gradient[:, i, j] += grad.reshape(len(i), w * w).T
            total = total + loss.detach()
        return total

    def _targets(self, segments, grid):
        return _Targets(segments.long(), grid, self.stride, self.window,
                        self.cut_off == "ignore", self.ignore_label)


class _Targets:
    """One image's segments seen from its regions: which regions count, and each window's
    per-pixel target and counted mask."""

    def __init__(self, segments, grid, stride, window, drop_cut_off, ignore_label):
        height, width = segments.shape
        self.stride, self.half = stride, window // 2
        margin = self.half * stride
        self.padded = F.pad(segments, (margin, margin + window * stride,
                                       margin, margin + window * stride), value=-1)
        if ignore_label is not None:
            self.padded[self.padded == ignore_label] = -1
        centre_rows = torch.arange(grid[0], device=segments.device) * stride + stride // 2
        centre_columns = torch.arange(grid[1], device=segments.device) * stride + stride // 2
        centre = self.padded[centre_rows[:, None] + margin, centre_columns[None, :] + margin]
        self.centre = centre  # -1: outside or ignored
        self.fits = self._fits(segments, centre, stride, window)
        self.kept = (centre > 0) & self.fits if drop_cut_off else centre > 0

    def _fits(self, segments, centre, stride, window):
        """Whether the centre's segment lies wholly inside the region's window."""
        ids = segments.clamp_min(0).reshape(-1)
        count = int(ids.max()) + 1 if ids.numel() else 1
        rows = torch.arange(segments.shape[0], device=ids.device).repeat_interleave(
            segments.shape[1])
        columns = torch.arange(segments.shape[1], device=ids.device).repeat(segments.shape[0])
        box = []
        for values, reduce in ((rows, "amin"), (rows, "amax"), (columns, "amin"),
                               (columns, "amax")):
            start = values.new_full((count,), -1 if reduce == "amax" else 1 << 40)
            box.append(start.scatter_reduce(0, ids, values, reduce=reduce))
        safe = centre.clamp_min(0)
        i = torch.arange(centre.shape[0], device=ids.device)[:, None]
        j = torch.arange(centre.shape[1], device=ids.device)[None, :]
        low_row, low_column = stride * (i - self.half), stride * (j - self.half)
        return ((box[0][safe] >= low_row) & (box[1][safe] < low_row + window * stride)
                & (box[2][safe] >= low_column) & (box[3][safe] < low_column + window * stride))

    def window(self, i, j):
        """Targets and counted masks (K x wS x wS) of the regions at cells (i, j)."""
        side = 2 * self.half * self.stride
        offsets = torch.arange(side, device=i.device)
        rows = (i * self.stride)[:, None, None] + offsets[None, :, None]
        columns = (j * self.stride)[:, None, None] + offsets[None, None, :]
        pixels = self.padded[rows, columns]  # window origin S(i-h) is padded index S i
        centre = self.centre[i, j][:, None, None]
        fits = self.fits[i, j][:, None, None]
        return (pixels == centre) & fits, pixels >= 0


class _RegionLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, segments, module):
        loss, gradient = module.loss_and_gradient(logits.detach(), segments)
        ctx.save_for_backward(gradient)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        (gradient,) = ctx.saved_tensors
        return grad_output * gradient, None, None


# ------------------------------------------------------------------ non-max suppression
class RegionNMS(nn.Module):
    """Greedy non-max suppression over every pathway's regions (B6). A region's mask is its
    logits > 0 (sigmoid > 0.5) on its own cells, its score the mean probability over the
    mask; empty masks are dropped. In score order, a kept region suppresses every region
    whose pixel IoU with it exceeds `threshold`. The regions that can overlap a given one
    are known from the grids (windows that intersect), so each kept region costs a constant
    amount of work and the whole pass is linear in the number of regions plus a sort.

    IoU is exact in pixels and computed on the coarse masks: every cell of the finer mask
    lies inside one cell of the coarser, so the intersection is a sum over the finer cells
    of the coarser mask read at their position. Returns K x 5: image, pathway, row, column,
    score."""

    def __init__(self, strides, windows, threshold: float = 0.5):
        super().__init__()
        self.strides, self.windows, self.threshold = list(strides), list(windows), threshold

    def forward(self, *logits: torch.Tensor) -> torch.Tensor:
        kept = []
        for n in range(logits[0].shape[0]):
            found = region_nms([q[n] for q in logits], self.strides, self.windows,
                               self.threshold)
            kept.append(torch.cat([found.new_full((len(found), 1), n), found], 1))
        return torch.cat(kept)


class _Pathway:
    """One pathway's regions: masks (Hg x Wg x w x w), scores, origins in pixels."""

    def __init__(self, logits, stride, window):
        self.stride, self.window, self.half = stride, window, window // 2
        probability = torch.sigmoid(logits.detach().float())
        self.grid = logits.shape[1:]
        self.masks = (probability > 0.5).permute(1, 2, 0).reshape(*self.grid, window, window)
        cells = self.masks.sum((2, 3))
        self.scores = torch.where(cells > 0, (probability * (probability > 0.5)).sum(0)
                                  / cells.clamp_min(1), torch.zeros(()))
        self.areas = cells * stride * stride


def region_nms(logits, strides, windows, threshold):
    """One image: logits per pathway (w^2 x Hg x Wg); returns K x 4 (pathway, row, column,
    score) of the kept regions in score order."""
    pathways = [_Pathway(q, s, w) for q, s, w in zip(logits, strides, windows)]
    scores = torch.cat([p.scores.reshape(-1) for p in pathways])
    sizes = [p.scores.numel() for p in pathways]
    offsets = [0]
    for size in sizes:
        offsets.append(offsets[-1] + size)
    suppressed = scores <= 0  # empty masks never compete
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    kept = []
    for index in order:
        if suppressed[index]:
            continue
        p = next(k for k in range(len(pathways)) if index < offsets[k + 1])
        row, column = divmod(index - offsets[p], pathways[p].grid[1])
        kept.append((p, row, column, float(scores[index])))
        for q, other in enumerate(pathways):
            rows, columns, iou = _overlaps(pathways[p], row, column, other)
            over = iou > threshold
            flat = offsets[q] + rows[:, None] * other.grid[1] + columns[None, :]
            suppressed[flat[over]] = True
    return torch.tensor(kept, dtype=torch.float32).reshape(-1, 4)


def _overlaps(a: _Pathway, row: int, column: int, b: _Pathway):
    """IoU of region (row, column) of pathway a with every region of b whose window meets
    its window: (rows, columns, IoU as rows x columns)."""
    top, left = a.stride * (row - a.half), a.stride * (column - a.half)
    extent = a.stride * a.window
    rows, columns = _meeting(b, top, extent, 0), _meeting(b, left, extent, 1)
    mask = a.masks[row, column]
    masks = b.masks[rows][:, columns]  # R x C x w_b x w_b
    if a.stride <= b.stride:
        inter = _read_coarse_at_fine(mask, top, left, a.stride, masks, rows, columns, b)
    else:
        inter = _read_fine_in_coarse(mask, top, left, a.stride, masks, rows, columns, b)
    union = a.areas[row, column] + b.areas[rows][:, columns] - inter
    return rows, columns, inter / union.clamp_min(1)


def _meeting(b: _Pathway, start: int, extent: int, axis: int) -> torch.Tensor:
    """Cells of b along an axis whose windows [S(i-h), S(i+h)) meet [start, start+extent)."""
    s, h = b.stride, b.half
    cells = torch.arange(b.grid[axis])
    low = s * (cells - h)
    return cells[(low < start + extent) & (low + s * b.window > start)]


def _read_coarse_at_fine(mask, top, left, stride, masks, rows, columns, b):
    """a finer than (or as fine as) b: every cell of a lies inside one cell of b, so the
    intersection counts a's mask cells where b's mask, read at that cell, is set."""
    cells = torch.arange(mask.shape[0])
    local_rows = (top + stride * cells)[None, :] // b.stride - (rows[:, None] - b.half)
    local_columns = (left + stride * cells)[None, :] // b.stride - (columns[:, None] - b.half)
    gathered, valid = _read(masks, local_rows, local_columns, b.window, per_candidate=True)
    return (gathered & valid & mask[None, None]).sum((2, 3)) * stride * stride


def _read_fine_in_coarse(mask, top, left, stride, masks, rows, columns, b):
    """b finer than a: every cell of b lies inside one cell of a; read a's mask there."""
    cells = torch.arange(b.window)
    local_rows = (b.stride * ((rows[:, None] - b.half) + cells[None, :]) - top) // stride
    local_columns = (b.stride * ((columns[:, None] - b.half) + cells[None, :]) - left) // stride
    gathered, valid = _read(mask, local_rows, local_columns, mask.shape[0], per_candidate=False)
    return (gathered & valid & masks).sum((2, 3)) * b.stride * b.stride


def _read(masks, local_rows, local_columns, side, per_candidate):
    """masks read at [r, c, y, x] = (local_rows[r, y], local_columns[c, x]), and whether
    that position lies inside the side x side mask. `per_candidate`: masks is R x C x s x s
    (one per candidate), else one s x s mask."""
    valid = (((local_rows >= 0) & (local_rows < side))[:, None, :, None]
             & ((local_columns >= 0) & (local_columns < side))[None, :, None, :])
    lr = local_rows.clamp(0, side - 1)[:, None, :, None]
    lc = local_columns.clamp(0, side - 1)[None, :, None, :]
    if per_candidate:
        r = torch.arange(local_rows.shape[0])[:, None, None, None]
        c = torch.arange(local_columns.shape[0])[None, :, None, None]
        return masks[r, c, lr, lc], valid
    return masks[lr, lc], valid
