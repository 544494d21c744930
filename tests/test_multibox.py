"""MultiBoxLoss against a float64 numpy transcription of the SSD fork's C++
(multibox_loss_layer.cpp and bbox_util.cpp: GetGroundTruth, MatchBBox, ComputeConfLoss,
MineHardExamples, EncodeBBox, the SmoothL1Loss and SoftmaxWithLoss it forwards to, and the
backward pass), loop by loop as the fork writes it, on small cases: loss and gradients."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import netdef

FLT_MIN = 1.1754943508222875e-38
CORNER, CENTER_SIZE, CORNER_SIZE = 1, 2, 3


# ------------------------------------------------------------------ the fork, transcribed
def bbox_size(b):
    if b[2] < b[0] or b[3] < b[1]:
        return 0.0
    return (b[2] - b[0]) * (b[3] - b[1])


def jaccard(a, b):
    if b[0] > a[2] or b[2] < a[0] or b[1] > a[3] or b[3] < a[1]:
        return 0.0
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w > 0 and h > 0:
        inter = w * h
        return inter / (bbox_size(a) + bbox_size(b) - inter)
    return 0.0


def match_bbox(gts, preds, match_per_prediction, threshold, ignore_cross):
    indices, best = [-1] * len(preds), [0.0] * len(preds)
    overlaps = {}
    for i, pred in enumerate(preds):
        if ignore_cross and any(v < 0 or v > 1 for v in pred):
            indices[i] = -2
            continue
        for j, gt in enumerate(gts):
            overlap = jaccard(pred, gt)
            if overlap > 1e-6:
                best[i] = max(best[i], overlap)
                overlaps.setdefault(i, {})[j] = overlap
    pool = list(range(len(gts)))
    while pool:
        max_idx, max_gt, max_overlap = -1, -1, -1.0
        for i in sorted(overlaps):
            if indices[i] != -1:
                continue
            for j in pool:
                if j in overlaps[i] and overlaps[i][j] > max_overlap:
                    max_idx, max_gt, max_overlap = i, j, overlaps[i][j]
        if max_idx == -1:
            break
        indices[max_idx], best[max_idx] = max_gt, max_overlap
        pool.remove(max_gt)
    if match_per_prediction:
        for i in sorted(overlaps):
            if indices[i] != -1:
                continue
            max_gt, max_overlap = -1, -1.0
            for j in range(len(gts)):
                if j in overlaps[i] and overlaps[i][j] >= threshold and overlaps[i][j] > max_overlap:
                    max_gt, max_overlap = j, overlaps[i][j]
            if max_gt != -1:
                indices[i], best[i] = max_gt, max_overlap
    return indices, best


def encode(prior, var, box, code):
    pw, ph = prior[2] - prior[0], prior[3] - prior[1]
    if code == CORNER:
        return [(box[k] - prior[k]) / var[k] for k in range(4)]
    if code == CORNER_SIZE:
        scale = [pw, ph, pw, ph]
        return [(box[k] - prior[k]) / scale[k] / var[k] for k in range(4)]
    pcx, pcy = (prior[0] + prior[2]) / 2, (prior[1] + prior[3]) / 2
    bw, bh = box[2] - box[0], box[3] - box[1]
    bcx, bcy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return [(bcx - pcx) / pw / var[0], (bcy - pcy) / ph / var[1],
            math.log(bw / pw) / var[2], math.log(bh / ph) / var[3]]


def softmax(row):
    e = np.exp(row - row.max())
    return e / e.sum()


def fork_multibox(loc, conf, priors, gt, p):
    """(loss, d loss / d loc, d loss / d conf), as the fork's forward and backward."""
    num, num_classes = loc.shape[0], p["num_classes"]
    num_priors = priors.shape[2] // 4
    prior_boxes = priors[0, 0].reshape(-1, 4)
    variances = priors[0, 1].reshape(-1, 4)
    all_gt = {}
    for row in gt.reshape(-1, 8):
        if row[0] == -1 or (not p["use_difficult"] and row[7]):
            continue
        all_gt.setdefault(int(row[0]), []).append((row[3:7], int(row[1])))
    loc_preds = loc.reshape(num, num_priors, 4)
    confs = conf.reshape(num, num_priors, num_classes)
    matches, overlaps = [], []
    for i in range(num):
        if i not in all_gt:
            matches.append(None)
            overlaps.append(None)
            continue
        m, o = match_bbox([b for b, _ in all_gt[i]], prior_boxes, p["per_prediction"],
                          p["threshold"], p["ignore_cross"])
        matches.append(m)
        overlaps.append(o)
    num_matches = sum(sum(1 for v in m if v > -1) for m in matches if m is not None)
    negs = []
    for i in range(num):
        if matches[i] is None or not p["mining"]:
            negs.append([])
            continue
        losses = []
        for j in range(num_priors):
            label = all_gt[i][matches[i][j]][1] if matches[i][j] > -1 else p["background"]
            prob = softmax(confs[i, j])[label]
            losses.append(-math.log(max(prob, FLT_MIN)))
        eligible = [(losses[m], m) for m in range(num_priors)
                    if matches[i][m] == -1 and overlaps[i][m] < p["neg_overlap"]]
        num_pos = sum(1 for v in matches[i] if v > -1)
        num_sel = min(int(num_pos * p["neg_pos_ratio"]), len(eligible))
        eligible.sort(key=lambda pair: -pair[0])
        selected = {m for _, m in eligible[:num_sel]}
        negs.append([m for m in range(num_priors) if matches[i][m] == -1 and m in selected])
    normalizer = max(1, num_matches) if p["normalization"] == "VALID" else \
        max(1, num * num_priors) if p["normalization"] == "FULL" else \
        max(1, num) if p["normalization"] == "BATCH_SIZE" else 1
    d_loc, d_conf = np.zeros_like(loc_preds), np.zeros_like(confs)
    loc_loss = conf_loss = 0.0
    for i in range(num):
        if matches[i] is None:
            continue
        for j in range(num_priors):
            if matches[i][j] <= -1:
                continue
            target = encode(prior_boxes[j], variances[j], all_gt[i][matches[i][j]][0], p["code"])
            for k in range(4):
                d = loc_preds[i, j, k] - target[k]
                if p["smooth_l1"]:
                    loc_loss += 0.5 * d * d if abs(d) < 1 else abs(d) - 0.5
                    grad = d if abs(d) < 1 else math.copysign(1.0, d)
                else:
                    loc_loss += 0.5 * d * d
                    grad = d
                d_loc[i, j, k] = p["loc_weight"] * grad / normalizer
    rows = []
    for i in range(num):
        if p["mining"]:
            if matches[i] is None:
                continue
            rows += [(i, j, all_gt[i][matches[i][j]][1]) for j in range(num_priors)
                     if matches[i][j] > -1]
            rows += [(i, j, p["background"]) for j in negs[i]]
        else:
            rows += [(i, j, all_gt[i][matches[i][j]][1] if matches[i] is not None
                      and matches[i][j] > -1 else p["background"]) for j in range(num_priors)]
    for i, j, label in rows:
        prob = softmax(confs[i, j])
        conf_loss -= math.log(max(prob[label], FLT_MIN))
        grad = prob.copy()
        grad[label] -= 1
        d_conf[i, j] += grad / normalizer
    loss = p["loc_weight"] * loc_loss / normalizer + conf_loss / normalizer
    return loss, d_loc.reshape(loc.shape), d_conf.reshape(conf.shape)


# ------------------------------------------------------------------ the cases
NET = """input: "loc" input_shape {{ dim: {num} dim: {loc} }}
input: "conf" input_shape {{ dim: {num} dim: {conf} }}
input: "prior" input_shape {{ dim: 1 dim: 2 dim: {loc} }}
input: "gt" input_shape {{ dim: 1 dim: 1 dim: {gts} dim: 8 }}
layer {{ name: "mbox_loss" type: "MultiBoxLoss" bottom: "loc" bottom: "conf" bottom: "prior"
        bottom: "gt" top: "loss" {propagate}
        loss_param {{ normalization: {normalization} }}
        multibox_loss_param {{ num_classes: {classes} match_type: {match} overlap_threshold: 0.5
          neg_pos_ratio: 3 neg_overlap: 0.5 code_type: {code} loc_loss_type: {loc_type}
          mining_type: {mining} use_difficult_gt: {difficult} background_label_id: 0
          ignore_cross_boundary_bbox: {cross} loc_weight: 1.5 }} }}
"""


def grid_priors(cells: int = 5):
    """Priors on a cells x cells grid, two shapes per cell (some leave the image), and
    SSD's variances."""
    boxes = []
    for y in range(cells):
        for x in range(cells):
            cx, cy = (x + 0.5) / cells, (y + 0.5) / cells
            for w, h in ((0.3, 0.3), (0.45, 0.22)):
                boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    boxes = np.array(boxes)
    return np.stack([boxes.ravel(), np.tile([0.1, 0.1, 0.2, 0.2], len(boxes))])[None]


GROUND_TRUTH = np.array([  # item, label, instance, xmin, ymin, xmax, ymax, difficult
    [0, 1, 0, 0.10, 0.15, 0.40, 0.50, 0],
    [0, 3, 1, 0.55, 0.50, 0.95, 0.90, 0],
    [0, 2, 2, 0.30, 0.30, 0.52, 0.44, 1],
    [2, 2, 0, 0.05, 0.60, 0.70, 0.98, 0],   # item 1 has no boxes
])

CASES = {
    "ssd": dict(match="PER_PREDICTION", code="CENTER_SIZE", loc_type="SMOOTH_L1",
                mining="MAX_NEGATIVE", difficult="true", cross="false", normalization="VALID"),
    "bipartite-corner-l2": dict(match="BIPARTITE", code="CORNER", loc_type="L2",
                                mining="MAX_NEGATIVE", difficult="false", cross="true",
                                normalization="VALID"),
    "corner-size-no-mining": dict(match="PER_PREDICTION", code="CORNER_SIZE",
                                  loc_type="SMOOTH_L1", mining="NONE", difficult="true",
                                  cross="false", normalization="BATCH_SIZE"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_the_forks_transcription(case):
    settings = CASES[case]
    rng = np.random.default_rng(sorted(CASES).index(case))
    priors = grid_priors()
    count, classes, num = priors.shape[2] // 4, 4, 3
    text = NET.format(num=num, loc=count * 4, conf=count * classes, gts=len(GROUND_TRUTH),
                      classes=classes, propagate="", **settings)
    module = netdef.load(text, phase="TRAIN", dtype=torch.float64)
    loc = rng.normal(0, 1.5, (num, count * 4))  # some offsets beyond Smooth L1's quadratic zone
    conf = rng.normal(0, 2, (num, count * classes))
    loc_t = torch.tensor(loc, requires_grad=True)
    conf_t = torch.tensor(conf, requires_grad=True)
    loss = module(loc=loc_t, conf=conf_t, prior=torch.tensor(priors),
                  gt=torch.tensor(GROUND_TRUTH.reshape(1, 1, -1, 8)))["loss"]
    loss.backward()
    params = dict(num_classes=classes, per_prediction=settings["match"] == "PER_PREDICTION",
                  threshold=0.5, ignore_cross=settings["cross"] == "true",
                  use_difficult=settings["difficult"] == "true", background=0,
                  mining=settings["mining"] != "NONE", neg_overlap=0.5, neg_pos_ratio=3.0,
                  code={"CORNER": CORNER, "CENTER_SIZE": CENTER_SIZE,
                        "CORNER_SIZE": CORNER_SIZE}[settings["code"]],
                  smooth_l1=settings["loc_type"] == "SMOOTH_L1", loc_weight=1.5,
                  normalization=settings["normalization"])
    expected, d_loc, d_conf = fork_multibox(loc, conf, priors, GROUND_TRUTH, params)
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(loc_t.grad.numpy(), d_loc, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(conf_t.grad.numpy(), d_conf, rtol=1e-9, atol=1e-12)
    assert np.count_nonzero(d_loc) > 8 and np.count_nonzero(d_conf) > 8  # the case has teeth


def test_propagate_down_picks_the_terms():
    """The fork adds a term only where its bottom propagates (SSD's files: loc and conf)."""
    priors = grid_priors()
    count = priors.shape[2] // 4
    rng = np.random.default_rng(5)
    feeds = dict(loc=torch.tensor(rng.normal(0, 1, (3, count * 4))),
                 conf=torch.tensor(rng.normal(0, 1, (3, count * 4))),
                 prior=torch.tensor(priors), gt=torch.tensor(GROUND_TRUTH.reshape(1, 1, -1, 8)))
    losses = {}
    for flags in ("true true false false", "true false false false", "false true false false"):
        propagate = " ".join(f"propagate_down: {flag}" for flag in flags.split())
        text = NET.format(num=3, loc=count * 4, conf=count * 4, gts=len(GROUND_TRUTH), classes=4,
                          propagate=propagate, **CASES["ssd"])
        losses[flags] = netdef.load(text, phase="TRAIN", dtype=torch.float64)(**feeds)["loss"].item()
    both, loc_only, conf_only = losses.values()
    assert loc_only > 0 and conf_only > 0 and both == pytest.approx(loc_only + conf_only, rel=1e-12)


TRAINED = """layer {{ name: "data" type: "HDF5Data" top: "raw" top: "prior" top: "gt"
        hdf5_data_param {{ source: "list.txt" batch_size: 1 }} }}
layer {{ name: "loc" type: "InnerProduct" bottom: "raw" top: "loc"
        inner_product_param {{ num_output: {loc} weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "conf" type: "InnerProduct" bottom: "raw" top: "conf"
        inner_product_param {{ num_output: {conf} weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "mbox_loss" type: "MultiBoxLoss" bottom: "loc" bottom: "conf" bottom: "prior"
        bottom: "gt" top: "loss"
        multibox_loss_param {{ num_classes: 4 background_label_id: 0 }} }}
"""


def test_a_box_with_the_background_label_is_a_data_error_at_the_loss(tmp_path, monkeypatch, cli):
    """Bad boxes in the data stop training with a located DataError, not an internal error."""
    import h5py

    monkeypatch.chdir(tmp_path)
    priors = grid_priors()
    count = priors.shape[2] // 4
    boxes = GROUND_TRUTH[:1].copy()
    boxes[0, 1] = 0  # the background label
    with h5py.File("batch.h5", "w") as out:
        out["raw"] = np.ones((1, 6), np.float32)
        out["prior"] = priors.astype(np.float32)
        out["gt"] = boxes.reshape(1, 1, 1, 8).astype(np.float32)
    (tmp_path / "list.txt").write_text("batch.h5\n")
    (tmp_path / "net.prototxt").write_text(TRAINED.format(loc=count * 4, conf=count * 4))
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.01\n'
                                              'lr_policy: "fixed"\nmax_iter: 2\n')
    code, _, err = cli("train", "solver.prototxt", "--no-progress")
    assert code == 1 and "internal error" not in err, err
    assert "net.prototxt:7: layer 'mbox_loss' (MultiBoxLoss): a ground-truth box has label 0: " \
           "the background label" in err, err
