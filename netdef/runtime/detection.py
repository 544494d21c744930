"""The detection families' layers: SSD's PriorBox and DetectionOutput, and py-faster-rcnn's
region proposals (its `rpn.proposal_layer`, OpenCV's `Proposal`).

Boxes are rows (x1, y1, x2, y2). SSD works in normalised coordinates, where a box's size
is (x2 - x1)(y2 - y1); py-faster-rcnn works in pixels with inclusive corners, where it is
(x2 - x1 + 1)(y2 - y1 + 1). Both suppress greedily in score order.
"""
from __future__ import annotations

import math

import torch
from torch import nn

CORNER, CENTER_SIZE, CORNER_SIZE = 1, 2, 3  # SSD's PriorBoxParameter.CodeType


class PriorBox(nn.Module):
    """SSD's default boxes for every cell of a feature map: a 1 x 2 x (cells * priors * 4)
    blob, the normalised corners then their variances. Per cell, per min_size: the square
    min_size box, the sqrt(min_size * max_size) square when max sizes are given, then one
    box per aspect ratio other than 1."""

    def __init__(self, min_sizes, max_sizes, aspect_ratios, clip: bool, variances,
                 image_size: tuple | None, step: tuple | None, offset: float):
        super().__init__()
        self.min_sizes, self.max_sizes = tuple(min_sizes), tuple(max_sizes)
        self.aspect_ratios = tuple(aspect_ratios)  # 1 first, duplicates and flips resolved
        self.clip, self.variances = clip, tuple(variances) or (0.1,)
        self.image_size, self.step, self.offset = image_size, step, offset

    def box_sizes(self) -> list[tuple[float, float]]:
        """(width, height) of each prior of one cell, in Caffe's order (float32 as Caffe)."""
        f32 = lambda v: float(torch.tensor(v, dtype=torch.float32))  # noqa: E731
        sizes = []
        for s, min_size in enumerate(self.min_sizes):
            sizes.append((min_size, min_size))
            if self.max_sizes:
                side = f32(math.sqrt(f32(min_size * self.max_sizes[s])))
                sizes.append((side, side))
            for ratio in self.aspect_ratios[1:]:
                root = f32(math.sqrt(ratio))
                sizes.append((f32(min_size * root), f32(min_size / root)))
        return sizes

    def forward(self, features, image=None):
        height, width = features.shape[-2:]
        image_h, image_w = self.image_size or image.shape[-2:]
        step_h, step_w = self.step or (image_h / height, image_w / width)
        f32 = dict(dtype=torch.float32, device=features.device)
        rows = (torch.arange(height, **f32) + self.offset) * torch.tensor(step_h, **f32)
        cols = (torch.arange(width, **f32) + self.offset) * torch.tensor(step_w, **f32)
        sizes = torch.tensor(self.box_sizes(), dtype=torch.float64, device=features.device)
        cy, cx = (v.double() for v in torch.meshgrid(rows, cols, indexing="ij"))
        cx, cy = cx.reshape(-1, 1), cy.reshape(-1, 1)  # cells x 1
        half_w, half_h = sizes[:, 0] / 2, sizes[:, 1] / 2
        boxes = torch.stack([(cx - half_w) / image_w, (cy - half_h) / image_h,
                             (cx + half_w) / image_w, (cy + half_h) / image_h], dim=-1)
        boxes = boxes.float().reshape(-1)
        if self.clip:
            boxes = boxes.clamp(0, 1)
        variances = torch.tensor(self.variances, **f32).repeat(boxes.numel() // 4 if len(
            self.variances) == 4 else boxes.numel())
        return torch.stack([boxes, variances]).unsqueeze(0).to(features.dtype)


class DetectionOutput(nn.Module):
    """SSD's detections: decode every prior's box, keep per class the boxes scoring above
    confidence_threshold (the top_k best), suppress greedily, keep the keep_top_k best per
    image. Returns 1 x 1 x K x 7 rows (image, label, score, x1, y1, x2, y2), per image by
    label then score; with no detection at all, one row of -1 per image (Caffe's)."""

    def __init__(self, num_classes: int, share_location: bool, background_label_id: int,
                 code_type: int, variance_encoded_in_target: bool, keep_top_k: int,
                 confidence_threshold: float, nms_threshold: float, top_k: int, eta: float):
        super().__init__()
        self.num_classes, self.share_location = num_classes, share_location
        self.background = background_label_id
        self.code_type, self.variance_in_target = code_type, variance_encoded_in_target
        self.keep_top_k, self.threshold = keep_top_k, confidence_threshold
        self.nms_threshold, self.top_k, self.eta = nms_threshold, top_k, eta

    def forward(self, loc, conf, priors, *unused):
        num = loc.shape[0]
        loc_classes = 1 if self.share_location else self.num_classes
        loc = loc.reshape(num, -1, loc_classes, 4).float()
        conf = conf.reshape(num, -1, self.num_classes).float()
        prior = priors.reshape(priors.shape[0], 2, -1, 4)[0].float()
        boxes = decode_boxes(loc, prior[0][:, None], prior[1][:, None], self.code_type,
                             self.variance_in_target)  # num x P x loc_classes x 4
        rows = [self.detect(i, boxes[i], conf[i]) for i in range(num)]
        rows = [r for r in rows if len(r)]
        if not rows:
            empty = torch.full((num, 7), -1.0, device=loc.device)
            empty[:, 0] = torch.arange(num, device=loc.device)
            return empty.reshape(1, 1, num, 7).to(priors.dtype)
        return torch.cat(rows).reshape(1, 1, -1, 7).to(priors.dtype)

    def detect(self, image: int, boxes, conf):
        labels = [c for c in range(self.num_classes) if c != self.background]
        if not labels:
            return conf.new_zeros(0, 7)
        scores = conf[:, labels].T  # classes x P
        class_boxes = (boxes[:, 0].expand(len(labels), -1, -1) if self.share_location
                       else boxes[:, labels].transpose(0, 1))
        order, kept = ssd_nms(class_boxes, scores, self.threshold, self.top_k,
                              self.nms_threshold, self.eta)
        label_of, rank = kept.nonzero(as_tuple=True)
        index = order[label_of, rank]
        score = scores[label_of, index]
        if 0 <= self.keep_top_k < len(score):
            best = torch.sort(score, descending=True, stable=True).indices[:self.keep_top_k]
            best = torch.sort(best).values  # back to label, then score, order
            label_of, index, score = label_of[best], index[best], score[best]
        corners = class_boxes[label_of, index]
        label = torch.tensor(labels, device=conf.device)[label_of].float()
        image_id = torch.full_like(score, float(image))
        return torch.cat([image_id[:, None], label[:, None], score[:, None], corners], dim=1)


def decode_boxes(loc, prior, variance, code_type: int, variance_in_target: bool):
    """SSD's DecodeBBox for every prediction; prior and variance broadcast against loc."""
    if variance_in_target:
        variance = torch.ones_like(variance)
    width = prior[..., 2] - prior[..., 0]
    height = prior[..., 3] - prior[..., 1]
    if code_type == CORNER:
        return prior + variance * loc
    if code_type == CORNER_SIZE:
        scale = torch.stack([width, height, width, height], dim=-1)
        return prior + variance * loc * scale
    cx = variance[..., 0] * loc[..., 0] * width + (prior[..., 0] + prior[..., 2]) / 2
    cy = variance[..., 1] * loc[..., 1] * height + (prior[..., 1] + prior[..., 3]) / 2
    w = torch.exp(variance[..., 2] * loc[..., 2]) * width
    h = torch.exp(variance[..., 3] * loc[..., 3]) * height
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def box_area(boxes, plus_one: float = 0.0):
    """SSD's BBoxSize (plus_one 0: empty boxes have area 0) or py-faster-rcnn's (plus_one 1)."""
    width = boxes[..., 2] - boxes[..., 0] + plus_one
    height = boxes[..., 3] - boxes[..., 1] + plus_one
    if plus_one:
        return width * height
    return torch.where((width < 0) | (height < 0), torch.zeros_like(width), width * height)


def pairwise_iou(a, b, plus_one: float = 0.0):
    """IoU of every box of a (... x K x 4) with every box of b (... x M x 4)."""
    a, b = a.unsqueeze(-2), b.unsqueeze(-3)
    width = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0]) + plus_one)
    height = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])
              + plus_one)
    meet = width.clamp_min(0) * height.clamp_min(0)
    if not plus_one:  # SSD counts only a positive-area meeting
        meet = torch.where((width > 0) & (height > 0), meet, torch.zeros_like(meet))
    union = box_area(a, plus_one) + box_area(b, plus_one) - meet
    return torch.where(meet > 0, meet / union, torch.zeros_like(meet))


def ssd_nms(boxes, scores, threshold: float, top_k: int, nms_threshold: float, eta: float):
    """SSD's ApplyNMSFast for a batch of classes (boxes B x P x 4, scores B x P) at once.

    Candidates score above `threshold`, best first (ties by index), at most top_k of them.
    Each is kept unless it overlaps a kept one by more than the class's threshold, which
    shrinks by eta after each keep while above 0.5. Returns the candidate order (B x K) and
    which of them are kept (B x K)."""
    ranked, order = torch.sort(scores, dim=1, descending=True, stable=True)
    if top_k is not None and 0 <= top_k < order.shape[1]:
        ranked, order = ranked[:, :top_k], order[:, :top_k]
    valid = ranked > threshold
    count = int(valid.sum(1).max()) if valid.numel() else 0
    order, valid = order[:, :count], valid[:, :count]
    candidates = torch.gather(boxes, 1, order.unsqueeze(-1).expand(-1, -1, 4))
    kept = torch.zeros_like(valid)
    limit = torch.full((len(order),), nms_threshold, device=boxes.device)
    for j in range(count):  # one row of overlaps at a time: memory stays B x K without top_k
        overlap = pairwise_iou(candidates[:, j:j + 1], candidates[:, :j])[:, 0]
        blocked = (kept[:, :j] & (overlap > limit[:, None])).any(1)
        kept[:, j] = valid[:, j] & ~blocked
        if eta < 1:
            shrink = kept[:, j] & (limit > 0.5)
            limit = torch.where(shrink, limit * eta, limit)
    return order, kept


def greedy_nms(boxes, scores, threshold: float, limit: int | None = None):
    """py-faster-rcnn's nms: best first, drop every later box overlapping a kept one by more
    than threshold (inclusive pixel areas); stops after `limit` keeps. Returns kept indices."""
    order = torch.sort(scores, descending=True, stable=True).indices
    keep = []
    while len(order) and (limit is None or len(keep) < limit):
        best = order[0]
        keep.append(best)
        rest = order[1:]
        overlap = pairwise_iou(boxes[best][None], boxes[rest], plus_one=1.0)[0]
        order = rest[overlap <= threshold]
    return torch.stack(keep) if keep else order


def generate_anchors(base_size: int, ratios, scales):
    """py-faster-rcnn's reference anchors: the base_size square reshaped to each ratio (sides
    rounded), then scaled, as inclusive pixel corners centred on the base square."""
    side = float(base_size)
    centre = (side - 1) / 2
    anchors = []
    for ratio in ratios:
        width = float(round(math.sqrt(side * side / ratio)))
        height = float(round(width * ratio))
        for scale in scales:
            w, h = width * scale, height * scale
            anchors.append([centre - (w - 1) / 2, centre - (h - 1) / 2,
                            centre + (w - 1) / 2, centre + (h - 1) / 2])
    return torch.tensor(anchors, dtype=torch.float64)


class Proposal(nn.Module):
    """py-faster-rcnn's region proposals: anchors at every feature cell, shifted by the
    predicted deltas, clipped to the image (im_info: height, width, scale), those smaller
    than min_size * scale dropped, the pre_nms_topn best suppressed at nms_thresh and the
    first post_nms_topn kept. Returns rois (R x 5: batch 0, x1, y1, x2, y2) and, when asked,
    their scores (R x 1)."""

    def __init__(self, feat_stride: int, base_size: int, min_size: int, ratios, scales,
                 pre_nms_topn: int, post_nms_topn: int, nms_thresh: float, with_scores: bool):
        super().__init__()
        self.feat_stride, self.min_size = feat_stride, min_size
        self.register_buffer("anchors", generate_anchors(base_size, ratios, scales).float(),
                             persistent=False)
        self.pre_nms_topn, self.post_nms_topn = pre_nms_topn, post_nms_topn
        self.nms_thresh, self.with_scores = nms_thresh, with_scores

    def forward(self, scores, deltas, im_info):
        count = len(self.anchors)
        height, width = scores.shape[-2:]
        scores = scores[0, count:].permute(1, 2, 0).reshape(-1).float()
        deltas = deltas[0].permute(1, 2, 0).reshape(-1, 4).float()
        info = im_info.reshape(-1)[:3].float()
        boxes = clip_boxes(shift_boxes(self.cell_anchors(height, width), deltas), info)
        sides = boxes[:, 2:] - boxes[:, :2] + 1
        big = (sides >= self.min_size * info[2]).all(1)
        boxes, scores = boxes[big], scores[big]
        order = torch.sort(scores, descending=True, stable=True).indices
        if self.pre_nms_topn > 0:
            order = order[:self.pre_nms_topn]
        boxes, scores = boxes[order], scores[order]
        keep = greedy_nms(boxes, scores, self.nms_thresh,
                          self.post_nms_topn if self.post_nms_topn > 0 else None)
        rois = torch.cat([boxes.new_zeros(len(keep), 1), boxes[keep]], dim=1)
        if self.with_scores:
            return rois, scores[keep].unsqueeze(1)
        return rois

    def cell_anchors(self, height: int, width: int):
        """Every anchor at every cell, cells in row-major order, anchors fastest."""
        ys = torch.arange(height, device=self.anchors.device) * self.feat_stride
        xs = torch.arange(width, device=self.anchors.device) * self.feat_stride
        y, x = torch.meshgrid(ys, xs, indexing="ij")
        shifts = torch.stack([x, y, x, y], dim=-1).reshape(-1, 1, 4).float()
        return (self.anchors.unsqueeze(0) + shifts).reshape(-1, 4)


def shift_boxes(boxes, deltas):
    """py-faster-rcnn's bbox_transform_inv: (dx, dy, dw, dh) applied to inclusive boxes."""
    widths = boxes[:, 2] - boxes[:, 0] + 1.0
    heights = boxes[:, 3] - boxes[:, 1] + 1.0
    cx = deltas[:, 0] * widths + boxes[:, 0] + 0.5 * widths
    cy = deltas[:, 1] * heights + boxes[:, 1] + 0.5 * heights
    w = torch.exp(deltas[:, 2]) * widths
    h = torch.exp(deltas[:, 3]) * heights
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=1)


def clip_boxes(boxes, info):
    """Corners into [0, width - 1] x [0, height - 1] (im_info is height, width, scale)."""
    high = torch.stack([info[1], info[0], info[1], info[0]]) - 1
    return torch.minimum(boxes.clamp_min(0), high)



class ImageInfo(nn.Module):
    """Faster R-CNN's im_info as given, or, when left out, the image's height and width at
    scale 1, one row per image."""

    def forward(self, info, image):
        if info is not None:
            return info
        height, width = image.shape[-2:]
        row = torch.tensor([[float(height), float(width), 1.0]], device=image.device)
        return row.expand(image.shape[0], 3)
