"""fast-rcnn's ROIPooling and R-FCN's PSROIPooling."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C's round(): halves go away from zero (torch.round sends them to even)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


class ROIPooling(nn.Module):
    """fast-rcnn's region max pooling. Each region (batch index, x1, y1, x2, y2 in input
    pixels) is scaled and rounded to feature cells, split into pooled_h x pooled_w bins with
    floor/ceil edges, and each bin max-pooled; a bin left empty by clipping gives 0."""

    def __init__(self, pooled_h: int, pooled_w: int, spatial_scale: float):
        super().__init__()
        self.pooled = (pooled_h, pooled_w)
        self.spatial_scale = spatial_scale

    def forward(self, features, rois):
        rois = rois.reshape(rois.shape[0], 5)
        out = features.new_zeros(rois.shape[0], features.shape[1], *self.pooled)
        # float32 like Caffe, so bin edges round the same way
        scaled = _round_half_away(rois[:, 1:].float() * torch.tensor(self.spatial_scale))
        starts, ends = scaled[:, :2], scaled[:, 2:]
        sizes = (ends - starts + 1).clamp_min(1)
        edges = [self._bin_edges(starts[:, axis], sizes[:, axis], self.pooled[1 - axis],
                                 features.shape[3 - axis]) for axis in (1, 0)]  # rows, columns
        for index, batch in enumerate(rois[:, 0].long().tolist()):
            rows = [edge[index] for edge in edges[0]]
            columns = [edge[index] for edge in edges[1]]
            out[index] = self._pool(features[batch], rows, columns)
        return out

    @staticmethod
    def _bin_edges(start, size, bins: int, limit: int):
        """(first, end) cell of every bin for every region, clipped to the map."""
        step = (size / bins).unsqueeze(1)
        index = torch.arange(bins, dtype=torch.float32)
        first = torch.floor(index * step) + start.unsqueeze(1)
        end = torch.ceil((index + 1) * step) + start.unsqueeze(1)
        return first.clamp(0, limit).long(), end.clamp(0, limit).long()

    @staticmethod
    def _pool(features, rows, columns):
        """Max of each (row bin, column bin) cell of one region; empty bins give 0."""
        (row_first, row_end), (col_first, col_end) = rows, columns
        top, bottom = int(row_first.min()), int(row_end.max())
        left, right = int(col_first.min()), int(col_end.max())
        if bottom <= top or right <= left:
            return features.new_zeros(features.shape[0], len(row_first), len(col_first))
        region = features[:, top:bottom, left:right]
        row_at = torch.arange(top, bottom, device=features.device)
        col_at = torch.arange(left, right, device=features.device)
        in_col = (col_at >= col_first.to(features.device)[:, None]) & (col_at < col_end.to(
            features.device)[:, None])  # bins x columns
        in_row = (row_at >= row_first.to(features.device)[:, None]) & (row_at < row_end.to(
            features.device)[:, None])
        lowest = torch.finfo(features.dtype).min
        by_column = region.unsqueeze(2).masked_fill(~in_col, lowest).amax(-1)  # C x rows x PW
        pooled = by_column.unsqueeze(1).masked_fill(~in_row[:, :, None], lowest).amax(2)
        empty = ~(in_row.any(1)[:, None] & in_col.any(1)[None, :])
        return pooled.masked_fill(empty, 0)


class PSROIPooling(nn.Module):
    """R-FCN's position-sensitive region pooling: each region (batch index, x1, y1, x2, y2,
    rounded, inclusive) is split into group x group bins with floor/ceil edges, and bin
    (i, j) of output channel d averages input channel (d * group + i) * group + j over the
    bin; an empty bin gives 0."""

    def __init__(self, output_dim: int, group_size: int, spatial_scale: float):
        super().__init__()
        self.output_dim, self.group, self.spatial_scale = output_dim, group_size, spatial_scale

    def forward(self, features, rois):
        rois = rois.reshape(rois.shape[0], 5).float()
        height, width = features.shape[-2:]
        scale = torch.tensor(self.spatial_scale)
        corners = _round_half_away(rois[:, 1:])
        start = corners[:, :2] * scale
        end = (corners[:, 2:] + 1.0) * scale
        extent = (end - start).clamp_min(0.1) / self.group  # bin sizes: x, y
        rows = self._edges(start[:, 1], extent[:, 1], height)
        cols = self._edges(start[:, 0], extent[:, 0], width)
        table = F.pad(features.double().cumsum(-1).cumsum(-2), (1, 0, 1, 0))  # summed areas
        g, d = self.group, self.output_dim
        channel = (torch.arange(d)[:, None, None] * g + torch.arange(g)[None, :, None]) * g \
            + torch.arange(g)[None, None, :]  # d x g x g
        batch = rois[:, 0].long()[:, None, None, None]
        r0, r1 = (e[:, None, :, None] for e in rows)
        c0, c1 = (e[:, None, None, :] for e in cols)
        pick = lambda r, c: table[batch, channel[None], r, c]  # noqa: E731
        total = pick(r1, c1) - pick(r0, c1) - pick(r1, c0) + pick(r0, c0)
        area = ((r1 - r0) * (c1 - c0)).to(total.dtype)
        out = torch.where(area > 0, total / area.clamp_min(1), torch.zeros_like(total))
        return out.to(features.dtype)

    def _edges(self, start, size, limit: int):
        """First and end cell of each of the group bins of every region, clipped."""
        index = torch.arange(self.group, dtype=torch.float32)
        first = torch.floor(index * size[:, None] + start[:, None])
        end = torch.ceil((index + 1) * size[:, None] + start[:, None])
        return first.clamp(0, limit).long(), end.clamp(0, limit).long()
