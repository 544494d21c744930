"""The five-pathway region net's own layers (reference-nets.md B).

A pathway's regions sit on its feature grid, stride S pixels per cell. Region (i, j) predicts a
w x w mask of cells around its cell: channel a*w + b of an N x w^2 x H x W blob holds the
offset (a - h, b - h), h = w / 2, so the region's window covers pixels [S(i-h), S(i+h)) on
each axis.
"""
from __future__ import annotations

import numpy as np
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
    are known from the grids (windows that intersect), so the candidate pairs are a
    constant number per region and the pass is linear in the regions plus a sort.

    IoU is exact in pixels and computed on the coarse masks: every cell of the finer mask
    lies inside one cell of the coarser, so the intersection is a sum over the finer cells
    of the coarser mask read at their position. The pass is sequential at heart and runs on
    the CPU whatever the input's device. Returns K x 5 on the input's device: image,
    pathway, row, column, score."""

    def __init__(self, strides, windows, threshold: float = 0.5):
        super().__init__()
        self.strides, self.windows, self.threshold = list(strides), list(windows), threshold

    def forward(self, *logits: torch.Tensor) -> torch.Tensor:
        kept = []
        for n in range(logits[0].shape[0]):
            found = region_nms([q[n].detach().cpu() for q in logits], self.strides,
                               self.windows, self.threshold)
            kept.append(torch.cat([found.new_full((len(found), 1), n), found], 1))
        return torch.cat(kept).to(logits[0].device)


class _Pathway:
    """One pathway's regions, flat in row-major cell order: masks (n x w x w, and as w x w
    planes over the regions) and their integral images, scores, pixel areas, window
    origins in pixels."""

    def __init__(self, logits, stride, window, first):
        self.stride, self.window, self.half, self.first = stride, window, window // 2, first
        probability = torch.sigmoid(logits.detach().float())
        self.grid = tuple(logits.shape[1:])
        inside = probability > 0.5
        self.planes = inside.reshape(window, window, -1)  # cell (a, b) of every region
        self.masks = self.planes.permute(2, 0, 1).contiguous()
        cells = self.planes.sum((0, 1))
        self.scores = torch.where(cells > 0, (probability * inside).sum(0).reshape(-1)
                                  / cells.clamp_min(1), torch.zeros(()))
        self.areas = cells.long() * stride * stride
        # integral images as planes: [r, c, region] = mask cells above-left of (r, c)
        small = self.planes.to(torch.int16)
        self.integral = F.pad(small.cumsum(0, dtype=torch.int16).cumsum(1, dtype=torch.int16),
                              (0, 0, 1, 0, 1, 0))
        index = torch.arange(self.masks.shape[0], device=logits.device)
        self.tops = stride * (index // self.grid[1] - self.half)
        self.lefts = stride * (index % self.grid[1] - self.half)
        self.alive = cells > 0  # empty masks never compete

    def cells_inside(self, regions, rows, columns):
        """Mask cells of each region inside [rows) x [columns) (local bounds, broadcast)."""
        ii = self.integral
        r = regions.reshape(-1, *([1] * (rows[0].dim() - 1)))
        return (ii[rows[1], columns[1], r].int() - ii[rows[0], columns[1], r]
                - ii[rows[1], columns[0], r] + ii[rows[0], columns[0], r])


def region_nms(logits, strides, windows, threshold, chunk_pairs: int = 1 << 20):
    """One image: logits per pathway (w^2 x Hg x Wg); returns K x 4 (pathway, row, column,
    score) of the kept regions in score order.

    Every pair of regions whose windows meet is a candidate (a constant number per region,
    known from the grids). Candidates are screened by an upper bound on their IoU (the
    intersection is at most each mask's part inside the other's window, read from integral
    images in O(1), and at most either area), the survivors get their exact pixel IoU, and
    greedy suppression walks the resulting overlap graph in score order."""
    pathways, first = [], 0
    for q, s, w in zip(logits, strides, windows):
        pathways.append(_Pathway(q, s, w, first))
        first += pathways[-1].masks.shape[0]
    edges = [_overlapping(pathways[a], pathways[b], threshold, chunk_pairs) if a != b
             else _overlapping_within(pathways[a], threshold, chunk_pairs)
             for a in range(len(pathways)) for b in range(a, len(pathways))]
    scores = torch.cat([p.scores for p in pathways])
    alive = torch.cat([p.alive for p in pathways])
    kept = _greedy(scores, alive, torch.cat([e[0] for e in edges]),
                   torch.cat([e[1] for e in edges]))
    where = torch.tensor([p.first for p in pathways])
    pathway = torch.searchsorted(where, kept, right=True) - 1
    cell = kept - where[pathway]
    columns = torch.tensor([p.grid[1] for p in pathways])[pathway]
    return torch.stack([pathway.float(), (cell // columns).float(), (cell % columns).float(),
                        scores[kept]], 1)


def _greedy(scores, alive, first, second):
    """Greedy NMS on the overlap graph: in score order (ties by index), keep a region unless
    a kept one overlaps it."""
    count = len(scores)
    ends = torch.cat([first, second])
    others = torch.cat([second, first])
    order = torch.argsort(ends, stable=True)
    neighbours = others[order].numpy()
    starts = np.zeros(count + 1, np.int64)
    starts[1:] = np.cumsum(np.bincount(ends.numpy(), minlength=count))
    suppressed = (~alive).numpy().copy()
    kept = []
    for index in torch.sort(scores, descending=True, stable=True).indices.tolist():
        if suppressed[index]:
            continue
        kept.append(index)
        suppressed[neighbours[starts[index]:starts[index + 1]]] = True
    return torch.tensor(kept, dtype=torch.long)


def _overlapping_within(p: _Pathway, threshold, chunk_pairs):
    """Global indices (u, v) of the region pairs of one pathway with IoU > threshold, each
    pair once. Two regions of a pathway differ by a whole-cell shift (di, dj), |di|, |dj| < w,
    so the work goes shift by shift over the whole grid: the IoU bound from the integral
    images reads the same window corners for every pair, and the exact intersection is one
    slice of each mask."""
    height, width = p.grid
    w = p.window
    corners = p.integral.reshape(w + 1, w + 1, height, width)  # each corner an H x W plane
    areas = torch.where(p.alive, p.areas, 0).float().reshape(height, width)
    found_u, found_v = [], []
    for di in range(min(w, height)):
        for dj in range(-min(w, width) + 1, min(w, width)):
            if di == 0 and dj <= 0:
                continue  # each pair once
            u, v = _shift_pairs(p, corners, areas, di, dj, threshold, chunk_pairs)
            found_u.append(u + p.first)
            found_v.append(v + p.first)
    empty = torch.zeros(0, dtype=torch.long)
    return torch.cat(found_u or [empty]), torch.cat(found_v or [empty])


def _shift_pairs(p, corners, areas, di, dj, threshold, chunk_pairs):
    """Pairs (region at (i, j), region at (i + di, j + dj)) with IoU > threshold."""
    height, width = p.grid
    w, left, right = p.window, max(0, -dj), max(0, dj)
    a_cells = (slice(0, height - di), slice(left, width - right))  # the first of each pair
    b_cells = (slice(di, height), slice(right, width - left))
    a_part = (slice(di, w), slice(right, w - left))  # their common cells, in each mask
    b_part = (slice(0, w - di), slice(left, w - right))
    area_a, area_b = areas[a_cells], areas[b_cells]
    bound = torch.minimum(_rect(corners, a_part, a_cells), _rect(corners, b_part, b_cells))
    bound = torch.minimum(bound * p.stride ** 2, torch.minimum(area_a, area_b))
    slack = threshold * (1 - 1e-6)  # a screen: never drop a pair on rounding
    candidate = (area_a > 0) & (area_b > 0) & (bound > slack * (area_a + area_b - bound))
    i, j = candidate.nonzero().unbind(1)
    u = i * width + j + left
    v = u + di * width + dj
    a_planes, b_planes = p.planes[a_part], p.planes[b_part]
    step = max(1, chunk_pairs // (w * w))
    inter = torch.cat([(a_planes[:, :, u[k:k + step]] & b_planes[:, :, v[k:k + step]])
                       .sum((0, 1)) for k in range(0, len(u), step)] or [u.new_zeros(0)])
    inter = inter * p.stride ** 2
    union = p.areas[u] + p.areas[v] - inter
    keep = inter.double() / union.clamp_min(1).double() > threshold
    return u[keep], v[keep]


def _rect(corners, part, cells):
    """Mask cells inside the local rectangle `part` for the regions `cells` of a grid."""
    (r0, r1), (c0, c1) = (part[0].start, part[0].stop), (part[1].start, part[1].stop)
    return (corners[r1, c1][cells].float() - corners[r0, c1][cells]
            - corners[r1, c0][cells] + corners[r0, c0][cells])


def _overlapping(a: _Pathway, b: _Pathway, threshold, chunk_pairs):
    """Global indices (u, v) of the region pairs of two pathways with IoU > threshold."""
    if (b.stride, b.window) < (a.stride, a.window):
        a, b = b, a  # a is the finer: its cells lie inside b's
    regions = a.alive.nonzero()[:, 0]
    rows, columns = _axis_candidates(a, b, 0), _axis_candidates(a, b, 1)
    areas, pads = _area_windows(b, rows, columns)
    step = max(1, chunk_pairs // (areas.shape[2] * areas.shape[3]))
    found_u, found_v = [], []
    for start in range(0, len(regions), step):
        mine = regions[start:start + step]
        u, v = _screened(a, b, mine, rows, columns, areas, pads, threshold)
        keep = _exact_iou(a, b, u, v, chunk_pairs) > threshold
        found_u.append(u[keep] + a.first)
        found_v.append(v[keep] + b.first)
    empty = torch.zeros(0, dtype=torch.long)
    return torch.cat(found_u or [empty]), torch.cat(found_v or [empty])


def _axis_candidates(a: _Pathway, b: _Pathway, axis: int):
    """Along an axis, for every cell of a: the first of b's cells whose window meets its
    window, and how many to look at (a span covering every cell's range; the extra ones,
    and those off b's grid, have no overlap and drop out in screening)."""
    cells = torch.arange(a.grid[axis])
    low = a.stride * (cells - a.half)
    high = low + a.stride * a.window
    first = torch.div(low, b.stride, rounding_mode="floor") + b.half - b.window + 1
    last = -torch.div(-high, b.stride, rounding_mode="floor") + b.half - 1
    return first, int((last - first).max()) + 1


def _area_windows(b: _Pathway, rows, columns):
    """b's region areas (0 for empty masks and off the grid) on a grid padded so that
    every candidate range is in it, viewed as span windows: [first + pad, ...]; and the
    pads before the first row and column."""
    (row_first, row_span), (column_first, column_span) = rows, columns
    pads = []
    for first, span, cells in ((row_first, row_span, b.grid[0]),
                               (column_first, column_span, b.grid[1])):
        pads.append((max(0, -int(first.min())), max(0, int(first.max()) + span - cells)))
    areas = torch.where(b.alive, b.areas, 0).float().reshape(b.grid)
    padded = F.pad(areas, (*pads[1], *pads[0]))
    return (padded.unfold(0, row_span, 1).unfold(1, column_span, 1),
            (pads[0][0], pads[1][0]))


def _screened(a, b, mine, rows, columns, areas, pads, threshold):
    """Candidate pairs (a's regions `mine` x b's regions) whose IoU bound passes: first
    IoU <= min(areas) / max(areas), then the window-overlap bound."""
    i, j = mine // a.grid[1], mine % a.grid[1]
    top, left = rows[0][i] + pads[0], columns[0][j] + pads[1]
    area_b = areas[top, left]  # len(mine) x row span x column span
    area_a = a.areas[mine].float()[:, None, None]
    slack = threshold * (1 - 1e-6)  # a screen: never drop a pair on rounding
    pair, row, column = ((area_b > slack * area_a) & (slack * area_b < area_a)).nonzero().unbind(1)
    u = mine[pair]
    v = (rows[0][i[pair]] + row) * b.grid[1] + columns[0][j[pair]] + column
    bound = torch.minimum(_mask_meeting_window(a, u, b, v), _mask_meeting_window(b, v, a, u))
    bound = torch.minimum(bound, torch.minimum(a.areas[u], b.areas[v]))
    passed = bound > threshold * (a.areas[u] + b.areas[v] - bound)
    return u[passed], v[passed]


def _mask_meeting_window(p, mine, q, theirs):
    """Pixels of p's mask (regions `mine`) in p's cells that meet q's window (regions
    `theirs`): an upper bound on their intersection, exact when q's window edges lie on
    p's cell edges."""
    def span(origin_p, origin_q):
        low = (origin_q - origin_p).div(p.stride, rounding_mode="floor")
        high = -(origin_p - origin_q - q.stride * q.window).div(p.stride, rounding_mode="floor")
        return low.clamp(0, p.window), high.clamp(0, p.window)
    rows = span(p.tops[mine], q.tops[theirs])
    columns = span(p.lefts[mine], q.lefts[theirs])
    return p.cells_inside(mine, rows, columns) * p.stride ** 2


def _exact_iou(a, b, u, v, chunk_pairs):
    """Pixel IoU of pairs (u of a, v of b), a the finer: each of a's cells lies inside one
    of b's cells, so the intersection counts a's mask cells where b's mask, read there, is
    set."""
    cells = torch.arange(a.window)
    inter = torch.empty(len(u), dtype=torch.long)
    step = max(1, chunk_pairs // (a.window * a.window))
    for start in range(0, len(u), step):
        uu, vv = u[start:start + step], v[start:start + step]
        local_rows = (a.tops[uu][:, None] + a.stride * cells - b.tops[vv][:, None]).div(
            b.stride, rounding_mode="floor")
        local_columns = (a.lefts[uu][:, None] + a.stride * cells - b.lefts[vv][:, None]).div(
            b.stride, rounding_mode="floor")
        inside = (((local_rows >= 0) & (local_rows < b.window))[:, :, None]
                  & ((local_columns >= 0) & (local_columns < b.window))[:, None, :])
        read = b.masks[vv[:, None, None], local_rows.clamp(0, b.window - 1)[:, :, None],
                       local_columns.clamp(0, b.window - 1)[:, None, :]]
        inter[start:start + step] = (read & inside & a.masks[uu]).sum((1, 2))
    inter = inter * a.stride ** 2
    union = a.areas[u] + b.areas[v] - inter
    return inter.double() / union.clamp_min(1).double()
