"""The region net's layers (reference-nets.md B): the transpose against its definition in
absolute coordinates, the loss against a loop-by-loop numpy transcription of B5, gradients
in float64."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import netdef
from netdef.runtime.regions import RegionLogisticLoss, RegionTranspose

RNG = np.random.default_rng(4)


# ------------------------------------------------------------------ transpose
def transpose_reference(p, w, padded=False):
    """p^T(x, D) = p(x + D, -D) with D = (a - h, b - h) cells, -D inside the window."""
    n, _, rows, columns = p.shape
    h = w // 2
    border = h if padded else 0
    out = np.zeros((n, w * w, rows - 2 * border, columns - 2 * border))
    for a in range(w):
        for b in range(w):
            da, db = a - h, b - h
            na, nb = -da + h, -db + h  # the index of -D
            if not (0 <= na < w and 0 <= nb < w):
                continue
            for i in range(out.shape[2]):
                for j in range(out.shape[3]):
                    si, sj = i + border + da, j + border + db
                    if 0 <= si < rows and 0 <= sj < columns:
                        out[:, a * w + b, i, j] = p[:, na * w + nb, si, sj]
    return out


@pytest.mark.parametrize("w,padded", [(2, False), (4, False), (4, True), (6, True)])
def test_transpose_matches_its_definition(w, padded):
    p = RNG.standard_normal((2, w * w, 7, 9))
    ours = RegionTranspose(w, padded)(torch.from_numpy(p)).numpy()
    assert np.array_equal(ours, transpose_reference(p, w, padded))


def test_transpose_twice_is_the_identity_on_kept_entries_and_is_self_adjoint():
    w = 4
    layer = RegionTranspose(w)
    p = torch.randn(1, w * w, 8, 8, dtype=torch.float64)
    twice = layer(layer(p))
    kept = layer(layer(torch.ones_like(p))) == 1
    assert kept.float().mean() > 0.3
    assert torch.equal(twice[kept], p[kept]) and (twice[~kept] == 0).all()
    q = torch.randn_like(p)
    assert torch.allclose((layer(p) * q).sum(), (p * layer(q)).sum())
    assert torch.autograd.gradcheck(layer, (p.requires_grad_(),))


TRANSPOSE_NET = """
input: "data" input_shape { dim: 1 dim: 3 dim: 64 dim: 64 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "regions" type: "Convolution" bottom: "pool" top: "p"
  convolution_param { num_output: 16 kernel_size: 5 pad: 2 } }
layer { name: "transpose" type: "RegionTranspose" bottom: "p" top: "pt"
  region_transpose_param { window: 4 } }
"""


def test_transpose_receptive_field_widens_by_w_minus_2_cells():
    """By hand: conv 3x3 then pool 2/2 sees 4 px at stride 2; the 5x5 region conv adds
    4 cells of 2 px: 12 px. The transpose (w = 4) reads the cells 1 - h .. h - 1 = -1..1
    around each cell: 2 more cells, 16 px."""
    report = netdef.analyze(TRANSPOSE_NET)
    assert report.blob("pt").shape == (1, 16, 32, 32)
    assert report.blob("p").rf["data"]["size"] == [12, 12]
    assert report.blob("pt").rf["data"]["size"] == [16, 16]
    assert report.blob("pt").rf["data"]["stride"] == [2, 2]


def test_transpose_checks_its_window():
    problems = netdef.check(TRANSPOSE_NET.replace("window: 4", "window: 3"))
    assert any("even number" in str(p) for p in problems)
    problems = netdef.check(TRANSPOSE_NET.replace("num_output: 16", "num_output: 15"))
    assert any("16 channels" in str(p) for p in problems)


# ------------------------------------------------------------------ loss
def _bilinear(region, stride):
    """Half-pixel bilinear upsampling of a w x w array by `stride`, by its formula."""
    w = region.shape[0]
    source = np.clip((np.arange(w * stride) + 0.5) / stride - 0.5, 0, w - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, w - 1)
    t = source - low
    rows = region[low] * (1 - t)[:, None] + region[high] * t[:, None]
    return rows[:, low] * (1 - t)[None] + rows[:, high] * t[None]


def loss_reference(logits, segments, stride, w, cut_off="negative", ignore=None):
    h = w // 2
    losses = []
    for n in range(logits.shape[0]):
        seg = segments[n, 0]
        height, width = seg.shape
        for i in range(logits.shape[2]):
            for j in range(logits.shape[3]):
                gy, gx = stride * i + stride // 2, stride * j + stride // 2
                if gy >= height or gx >= width or seg[gy, gx] <= 0 or seg[gy, gx] == ignore:
                    continue
                label = seg[gy, gx]
                top, left = stride * (i - h), stride * (j - h)
                ys, xs = np.nonzero(seg == label)
                fits = (ys.min() >= top and ys.max() < top + w * stride
                        and xs.min() >= left and xs.max() < left + w * stride)
                if not fits and cut_off == "ignore":
                    continue
                up = _bilinear(logits[n, :, i, j].reshape(w, w), stride)
                total, counted = 0.0, 0
                for r in range(w * stride):
                    for c in range(w * stride):
                        y, x = top + r, left + c
                        if not (0 <= y < height and 0 <= x < width) or seg[y, x] == ignore:
                            continue
                        target = float(fits and seg[y, x] == label)
                        z = up[r, c]
                        total += max(z, 0) - z * target + np.log1p(np.exp(-abs(z)))
                        counted += 1
                losses.append(total / max(counted, 1))
    return np.mean(losses) if losses else 0.0


def _segments(n, height, width, seed):
    rng = np.random.default_rng(seed)
    seg = np.zeros((n, 1, height, width), np.int64)
    for image in range(n):
        for label in range(1, 4):
            y, x = rng.integers(0, height - 4), rng.integers(0, width - 4)
            seg[image, 0, y:y + rng.integers(2, 6), x:x + rng.integers(2, 8)] = label
    return seg


@pytest.mark.parametrize("cut_off", ["negative", "ignore"])
@pytest.mark.parametrize("stride,w", [(2, 4), (4, 2), (3, 4)])
def test_loss_matches_the_definition(stride, w, cut_off):
    height, width = 14, 17
    grid = (-(-height // stride), -(-width // stride))
    logits = RNG.standard_normal((2, w * w, *grid))
    segments = _segments(2, height, width, stride * 10 + w)
    segments[0, 0, 0, :3] = 255  # ignored pixels
    layer = RegionLogisticLoss(stride, w, cut_off=cut_off, ignore_label=255, chunk_pixels=100)
    ours = layer(torch.from_numpy(logits), torch.from_numpy(segments)).item()
    expected = loss_reference(logits, segments, stride, w, cut_off, ignore=255)
    assert ours == pytest.approx(expected, rel=1e-10)


def test_loss_gradients_in_float64_and_independent_of_the_chunk():
    stride, w = 2, 4
    logits = torch.randn(1, w * w, 5, 6, dtype=torch.float64, requires_grad=True)
    segments = torch.from_numpy(_segments(1, 10, 12, 3))
    small = RegionLogisticLoss(stride, w, chunk_pixels=1)  # one region at a time
    big = RegionLogisticLoss(stride, w)
    assert torch.autograd.gradcheck(lambda x: small(x, segments), (logits,))
    a = torch.autograd.grad(small(logits, segments), logits)[0]
    b = torch.autograd.grad(big(logits, segments), logits)[0]
    assert torch.allclose(a, b, atol=1e-14) and a.abs().sum() > 0


# ------------------------------------------------------------------ non-max suppression
def nms_reference(logits, strides, windows, threshold):
    """Quadratic greedy NMS on full pixel masks: each region drawn on a canvas, IoU with
    every kept region."""
    regions = []
    for p, (q, s, w) in enumerate(zip(logits, strides, windows)):
        h = w // 2
        probability = 1 / (1 + np.exp(-q))
        for i in range(q.shape[1]):
            for j in range(q.shape[2]):
                cells = probability[:, i, j].reshape(w, w) > 0.5
                if not cells.any():
                    continue
                score = probability[:, i, j].reshape(w, w)[cells].mean()
                pixels = set()
                for a, b in zip(*np.nonzero(cells)):
                    y, x = s * (i - h + a), s * (j - h + b)
                    pixels |= {(y + dy, x + dx) for dy in range(s) for dx in range(s)}
                regions.append((score, p, i, j, pixels))
    order = sorted(range(len(regions)), key=lambda k: -regions[k][0])  # stable
    kept = []
    for k in order:
        pixels = regions[k][4]
        if all(len(pixels & regions[m][4]) / len(pixels | regions[m][4]) <= threshold
               for m in kept):
            kept.append(k)
    return [regions[k][1:4] for k in kept]


@pytest.mark.parametrize("seed", range(4))
def test_nms_equals_the_quadratic_reference(seed):
    from netdef.runtime.regions import region_nms
    rng = np.random.default_rng(seed)
    strides, windows = [2, 4, 8], [4, 4, 2]
    height, width = 24, 32
    logits = [rng.normal(-0.2, 2.0, (w * w, height // s, width // s))
              for s, w in zip(strides, windows)]
    threshold = [0.3, 0.5, 0.7, 0.5][seed]
    ours = region_nms([torch.from_numpy(q).float() for q in logits], strides, windows, threshold)
    expected = nms_reference([q.astype(np.float32) for q in logits], strides, windows, threshold)
    assert len(expected) > 5
    assert [tuple(int(v) for v in row[:3]) for row in ours.tolist()] == expected
