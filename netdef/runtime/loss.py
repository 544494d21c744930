"""Loss layers with Caffe's normalisation modes and ignore_label, and Accuracy."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._caffe import FLT_MIN, per_item


def normalizer(mode: str, outer: int, inner: int, valid) -> torch.Tensor | float:
    """Caffe's LossLayer::GetNormalizer, never below 1."""
    if mode == "FULL":
        return float(max(outer * inner, 1))
    if mode == "VALID":
        return valid.clamp_min(1) if torch.is_tensor(valid) else float(max(valid, 1))
    if mode == "BATCH_SIZE":
        return float(max(outer, 1))
    return 1.0


class SoftmaxWithLoss(nn.Module):
    """-log softmax(x)[label] summed over positions whose label is not `ignore_label`,
    divided by the normalizer; optionally also returns the softmax."""

    def __init__(self, axis: int, ignore_label: int | None, normalization: str, with_prob: bool):
        super().__init__()
        self.axis, self.ignore_label = axis, ignore_label
        self.normalization, self.with_prob = normalization, with_prob

    def forward(self, x, label):
        log_prob = torch.log_softmax(x, self.axis).movedim(self.axis, -1)
        outer = math.prod(x.shape[:self.axis])
        inner = math.prod(x.shape[self.axis + 1:])
        label = label.reshape(log_prob.shape[:-1]).long()
        valid = label != self.ignore_label if self.ignore_label is not None \
            else torch.ones_like(label, dtype=torch.bool)
        picked = log_prob.gather(-1, torch.where(valid, label, 0).unsqueeze(-1)).squeeze(-1)
        # Caffe clamps the probability at FLT_MIN before the log
        picked = picked.clamp_min(math.log(FLT_MIN))
        loss = -(picked * valid).sum() / normalizer(self.normalization, outer, inner, valid.sum())
        return (loss, torch.softmax(x, self.axis)) if self.with_prob else loss


class SigmoidCrossEntropyLoss(nn.Module):
    def __init__(self, ignore_label: int | None, normalization: str):
        super().__init__()
        self.ignore_label, self.normalization = ignore_label, normalization

    def forward(self, x, target):
        target = target.reshape(x.shape)
        valid = target != self.ignore_label if self.ignore_label is not None \
            else torch.ones_like(target, dtype=torch.bool)
        losses = F.binary_cross_entropy_with_logits(x, torch.where(valid, target, 0),
                                                    reduction="none")
        outer = x.shape[0]
        return (losses * valid).sum() / normalizer(self.normalization, outer, x.numel() // outer,
                                                   valid.sum())


class EuclideanLoss(nn.Module):
    def forward(self, a, b):
        return (a - b.reshape(a.shape)).pow(2).sum() / (2 * a.shape[0])


class HingeLoss(nn.Module):
    """sum over items and classes of max(0, 1 - t * x), t = +1 for the label, -1 otherwise
    (squared for L2), divided by the batch size."""

    def __init__(self, squared: bool):
        super().__init__()
        self.squared = squared

    def forward(self, x, label):
        x = per_item(x)
        sign = -torch.ones_like(x)
        sign.scatter_(1, label.reshape(-1, 1).long(), 1.0)
        margins = (1 - sign * x).clamp_min(0)
        return (margins.pow(2) if self.squared else margins).sum() / x.shape[0]


class MultinomialLogisticLoss(nn.Module):
    """-log(max(p[label], 1e-20)) averaged over items; bottom 0 holds probabilities."""

    def forward(self, prob, label):
        prob = per_item(prob)
        picked = prob.gather(1, label.reshape(-1, 1).long()).squeeze(1)
        return -torch.log(picked.clamp_min(1e-20)).sum() / prob.shape[0]


class InfogainLoss(nn.Module):
    """-sum_k H[label, k] log softmax(x)_k over positions, / normalizer (H from bottom 2, or
    the `matrix` read from infogain_loss_param.source)."""

    def __init__(self, axis: int, ignore_label: int | None, normalization: str, matrix=None):
        super().__init__()
        self.axis, self.ignore_label, self.normalization = axis, ignore_label, normalization
        self.register_buffer("matrix", torch.tensor(matrix) if matrix is not None else None,
                             persistent=False)

    def forward(self, x, label, infogain=None):
        infogain = self.matrix.to(x.dtype) if infogain is None else infogain
        log_prob = torch.log_softmax(x, self.axis).movedim(self.axis, -1).clamp_min(math.log(FLT_MIN))
        label = label.reshape(log_prob.shape[:-1]).long()
        valid = label != self.ignore_label if self.ignore_label is not None \
            else torch.ones_like(label, dtype=torch.bool)
        rows = infogain.reshape(infogain.shape[-2], infogain.shape[-1])[torch.where(valid, label, 0)]
        losses = -(rows * log_prob).sum(-1) * valid
        outer = math.prod(x.shape[:self.axis])
        return losses.sum() / normalizer(self.normalization, outer,
                                         math.prod(x.shape[self.axis + 1:]), valid.sum())


class ContrastiveLoss(nn.Module):
    """Pairs: similar (y = 1) cost d^2, dissimilar max(margin - d, 0)^2 (legacy: max(margin - d^2,
    0)); summed and divided by 2N."""

    def __init__(self, margin: float, legacy: bool):
        super().__init__()
        self.margin, self.legacy = margin, legacy

    def forward(self, a, b, similar):
        squared = per_item(a - b).pow(2).sum(1)
        similar = similar.reshape(-1).to(a.dtype)
        if self.legacy:
            apart = (self.margin - squared).clamp_min(0)
        else:
            apart = (self.margin - squared.sqrt()).clamp_min(0).pow(2)
        return (similar * squared + (1 - similar) * apart).sum() / (2 * a.shape[0])


class Accuracy(nn.Module):
    """Share of positions whose label is among the top_k scores (ignore_label skipped);
    optionally also the accuracy per class."""

    def __init__(self, axis: int, top_k: int, ignore_label: int | None, per_class: bool):
        super().__init__()
        self.axis, self.top_k = axis, top_k
        self.ignore_label, self.per_class = ignore_label, per_class

    def forward(self, x, label):
        scores = x.movedim(self.axis, -1)
        label = label.reshape(scores.shape[:-1]).long()
        valid = label != self.ignore_label if self.ignore_label is not None \
            else torch.ones_like(label, dtype=torch.bool)
        safe = torch.where(valid, label, 0)
        # Caffe counts a hit when fewer than top_k scores beat the label's score
        label_score = scores.gather(-1, safe.unsqueeze(-1))
        hit = ((scores > label_score).sum(-1) < self.top_k) & valid
        accuracy = hit.sum() / valid.sum().clamp_min(1)
        if not self.per_class:
            return accuracy
        classes = scores.shape[-1]
        totals = torch.zeros(classes, device=x.device).index_add_(0, safe[valid], torch.ones_like(
            safe[valid], dtype=torch.float))
        hits = torch.zeros(classes, device=x.device).index_add_(0, safe[hit], torch.ones_like(
            safe[hit], dtype=torch.float))
        return accuracy, torch.where(totals > 0, hits / totals.clamp_min(1), torch.zeros_like(hits))


class SmoothL1Loss(nn.Module):
    """py-faster-rcnn's SmoothL1Loss: d = inside * (a - b); 0.5 (sigma d)^2 where
    |d| < 1 / sigma^2, else |d| - 0.5 / sigma^2; times outside; summed, over the batch size."""

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma2 = sigma * sigma

    def forward(self, a, b, inside=None, outside=None):
        d = a - b.reshape(a.shape)
        if inside is not None:
            d = d * inside.reshape(a.shape)
        small = d.abs() < 1.0 / self.sigma2
        loss = torch.where(small, 0.5 * self.sigma2 * d * d, d.abs() - 0.5 / self.sigma2)
        if outside is not None:
            loss = loss * outside.reshape(a.shape)
        return loss.sum() / a.shape[0]
