"""SSD's MultiBoxLoss: each default box (prior) is matched to a ground-truth box, the
matched ones learn their offsets (Smooth L1 or L2) and their class (softmax), and the
hardest unmatched ones learn to say background (MAX_NEGATIVE mining, `neg_pos_ratio`
negatives per positive).

Matching, as the fork's MatchBBox: bipartite first (repeatedly the best-overlapping free
prior and ground-truth pair, first in prior order on ties), then, for PER_PREDICTION, every
free prior to its best ground truth overlapping it by `overlap_threshold` or more. Both
losses are summed and divided by the normalizer (VALID: the number of matches). Matching
and mining pick indices without gradients; the losses over them are differentiable.

The ground truth is SSD's label blob: 1 x 1 x G x 8 rows (item, label, instance, xmin, ymin,
xmax, ymax, difficult); item -1 marks a batch without boxes.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ._caffe import BadBatch
from .detection import CORNER, CORNER_SIZE, pairwise_iou
from .loss import normalizer

LOG_FLT_MIN = math.log(1.1754943508222875e-38)  # Caffe clamps probabilities at FLT_MIN
OVERLAP_FLOOR = 1e-6  # the fork records overlaps above this only


class MultiBoxLoss(nn.Module):
    def __init__(self, num_classes: int, loc_weight: float, overlap_threshold: float,
                 per_prediction: bool, background: int, use_difficult: bool,
                 neg_pos_ratio: float, neg_overlap: float, mining: bool, code_type: int,
                 variance_in_target: bool, ignore_cross_boundary: bool, smooth_l1: bool,
                 normalization: str, loc_term: bool, conf_term: bool):
        super().__init__()
        self.num_classes, self.loc_weight, self.background = num_classes, loc_weight, background
        self.overlap_threshold, self.per_prediction = overlap_threshold, per_prediction
        self.use_difficult, self.neg_pos_ratio, self.neg_overlap = use_difficult, neg_pos_ratio, neg_overlap
        self.mining, self.code_type, self.variance_in_target = mining, code_type, variance_in_target
        self.ignore_cross_boundary, self.smooth_l1 = ignore_cross_boundary, smooth_l1
        self.normalization, self.loc_term, self.conf_term = normalization, loc_term, conf_term

    def forward(self, loc, conf, priors, ground_truth):
        batch = loc.shape[0]
        loc = loc.reshape(batch, -1, 4)
        count = loc.shape[1]
        conf = conf.reshape(batch, count, self.num_classes)
        prior, variance = priors.reshape(2, -1, 4)[:, :count]
        truth = self.ground_truth(ground_truth.reshape(-1, 8), batch)
        with torch.no_grad():
            matches, overlaps = zip(*(self.match(prior, boxes) for boxes, _ in truth))
            match = torch.stack(matches)  # batch x priors: ground-truth index, -1 none, -2 ignored
            labels = torch.stack([self.prior_labels(row, boxes_labels[1])
                                  for row, boxes_labels in zip(match, truth)])
            negatives = self.negatives(conf.detach(), match, torch.stack(overlaps), labels, truth)
        positive = match > -1
        total = loc.new_zeros(())
        norm = normalizer(self.normalization, batch, count, int(positive.sum()))
        if self.loc_term and positive.any():
            target = torch.cat([self.encode(prior[row > -1], variance[row > -1], boxes[row[row > -1]])
                                for row, (boxes, _) in zip(match, truth) if (row > -1).any()])
            total = total + self.loc_weight * self.loc_loss(loc[positive] - target) / norm
        if self.conf_term:
            rows = positive | negatives if self.mining else torch.ones_like(positive)
            picked = torch.log_softmax(conf[rows], dim=-1).gather(1, labels[rows][:, None])
            total = total - picked.clamp_min(LOG_FLT_MIN).sum() / norm
        return total

    def ground_truth(self, rows, batch: int) -> list[tuple]:
        """(boxes G x 4, labels G) per item, difficult ones dropped unless use_difficult."""
        keep = rows[:, 0] != -1
        if not self.use_difficult:
            keep &= rows[:, 7] == 0
        rows = rows[keep]
        labels = rows[:, 1].long()
        bad = (labels < 0) | (labels >= self.num_classes) | (labels == self.background)
        if bad.any():
            raise BadBatch(f"a ground-truth box has label {int(labels[bad][0])}: the background "
                           f"label, or outside 0..{self.num_classes - 1} (num_classes)")
        items = rows[:, 0].long()
        return [(rows[items == i, 3:7], labels[items == i]) for i in range(batch)]

    def match(self, prior, boxes):
        """The fork's MatchBBox with label -1: per prior, its ground truth and overlap."""
        count = prior.shape[0]
        match = torch.full((count,), -1, dtype=torch.long, device=prior.device)
        if not len(boxes):
            return match, prior.new_zeros(count)
        iou = pairwise_iou(prior, boxes.to(prior.dtype))
        if self.ignore_cross_boundary:
            crossing = ((prior < 0) | (prior > 1)).any(dim=1)
            match[crossing] = -2
            iou[crossing] = 0
        recorded = iou > OVERLAP_FLOOR
        overlap = torch.where(recorded, iou, torch.zeros_like(iou)).max(dim=1).values
        candidates = torch.where(recorded, iou, torch.full_like(iou, -math.inf))
        for _ in range(boxes.shape[0]):  # bipartite: the best free pair, one ground truth each
            free = torch.where((match == -1)[:, None], candidates, torch.full_like(iou, -math.inf))
            best = int(free.argmax())
            if free.view(-1)[best] == -math.inf:
                break
            row, column = divmod(best, boxes.shape[0])
            match[row], overlap[row] = column, iou[row, column]
            candidates[:, column] = -math.inf
        if self.per_prediction:
            good = recorded & (iou >= self.overlap_threshold)
            scores = torch.where(good, iou, torch.full_like(iou, -math.inf))
            value, column = scores.max(dim=1)  # max returns the first maximum, as the fork's strict >
            take = (match == -1) & (value > -math.inf)
            match[take], overlap[take] = column[take], value[take]
        return match, overlap

    def prior_labels(self, match, labels):
        """The class each prior should predict: its ground truth's, else the background."""
        result = torch.full_like(match, self.background)
        result[match > -1] = labels[match[match > -1]]
        return result

    def negatives(self, conf, match, overlap, labels, truth):
        """MAX_NEGATIVE mining: per item with ground truth, the unmatched priors overlapping
        less than neg_overlap with the highest confidence loss, neg_pos_ratio per positive."""
        chosen = torch.zeros_like(match, dtype=torch.bool)
        if not self.mining:
            return chosen
        loss = -torch.log_softmax(conf, dim=-1).gather(2, labels[..., None])[..., 0] \
            .clamp_min(LOG_FLT_MIN)
        for item, (boxes, _) in enumerate(truth):
            if not len(boxes):
                continue
            eligible = (match[item] == -1) & (overlap[item] < self.neg_overlap)
            positives = int((match[item] > -1).sum())
            wanted = min(int(positives * self.neg_pos_ratio), int(eligible.sum()))
            scores = torch.where(eligible, loss[item], torch.full_like(loss[item], -math.inf))
            order = torch.sort(scores, descending=True, stable=True).indices
            chosen[item, order[:wanted]] = True
        return chosen

    def encode(self, prior, variance, boxes):
        """The fork's EncodeBBox: a ground-truth box as the offsets a prior should predict."""
        if self.variance_in_target:
            variance = torch.ones_like(variance)
        width, height = prior[:, 2] - prior[:, 0], prior[:, 3] - prior[:, 1]
        if self.code_type == CORNER:
            return (boxes - prior) / variance
        if self.code_type == CORNER_SIZE:
            return (boxes - prior) / torch.stack([width, height, width, height], 1) / variance
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2 - (prior[:, :2] + prior[:, 2:]) / 2
        size = boxes[:, 2:] - boxes[:, :2]
        return torch.cat([centre / torch.stack([width, height], 1),
                          torch.log(size / torch.stack([width, height], 1))], 1) / variance

    def loc_loss(self, difference):
        if self.smooth_l1:  # the fork's SmoothL1Loss (no sigma), summed
            small = difference.abs() < 1
            return torch.where(small, 0.5 * difference * difference, difference.abs() - 0.5).sum()
        return 0.5 * (difference * difference).sum()  # EuclideanLoss over a batch of one
