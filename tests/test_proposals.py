"""Region masks, recall metrics and pictures (netdef.proposals) against pixel-by-pixel
references written from the definitions in reference-nets.md B7."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from netdef.proposals import Proposals, evaluate, kept_picture, overlaps, pathway_picture
from netdef.runtime.regions import region_nms

from .test_regions import _bilinear

STRIDES, WINDOWS = [2, 4, 8], [4, 4, 2]
HEIGHT, WIDTH = 26, 30  # not a multiple of the coarsest stride: masks get clipped


def _proposals(seed):
    rng = np.random.default_rng(seed)
    logits = [torch.from_numpy(rng.normal(-0.3, 2.0, (w * w, -(-HEIGHT // s), -(-WIDTH // s))))
              .float() for s, w in zip(STRIDES, WINDOWS)]
    kept = region_nms(logits, STRIDES, WINDOWS, 0.6)
    return Proposals(logits, STRIDES, WINDOWS, kept, (HEIGHT, WIDTH))


def _segments(seed):
    rng = np.random.default_rng(100 + seed)
    seg = np.zeros((HEIGHT, WIDTH), np.int64)
    for label in (3, 7, 9):  # ids need not be 1..G
        y, x = rng.integers(0, HEIGHT - 6), rng.integers(0, WIDTH - 6)
        seg[y:y + rng.integers(4, 14), x:x + rng.integers(4, 14)] = label
    seg[rng.integers(0, HEIGHT, 20), rng.integers(0, WIDTH, 20)] = 255  # ignored
    return seg


def _pixel_mask(proposals, row):
    """The kept region's mask on the image, by the definition: its logits upsampled by the
    pathway's stride over its window, positive, inside the image."""
    p, i, j = (int(v) for v in proposals.kept[row, :3])
    s, w = STRIDES[p], WINDOWS[p]
    up = _bilinear(proposals.logits[p][:, i, j].numpy().reshape(w, w).astype(np.float64), s)
    mask = np.zeros((HEIGHT, WIDTH), bool)
    for r, c in zip(*np.nonzero(up > 0)):
        y, x = s * (i - w // 2) + r, s * (j - w // 2) + c
        if 0 <= y < HEIGHT and 0 <= x < WIDTH:
            mask[y, x] = True
    return mask


def _reference_ious(proposals, seg):
    valid = seg != 255
    ious = np.zeros((len(proposals.kept), 3))
    for row in range(len(proposals.kept)):
        mask = _pixel_mask(proposals, row) & valid
        for g, label in enumerate((3, 7, 9)):
            truth = seg == label
            ious[row, g] = (mask & truth).sum() / (mask | truth).sum()
    return ious


@pytest.mark.parametrize("seed", range(3))
def test_overlaps_equal_pixel_ious(seed):
    proposals, seg = _proposals(seed), _segments(seed)
    ious, ids = overlaps(proposals, seg)
    assert ids.tolist() == [3, 7, 9]
    expected = _reference_ious(proposals, seg)
    assert len(expected) > 20 and expected.max() > 0.2
    np.testing.assert_allclose(ious.numpy(), expected, atol=1e-12)


def test_metrics_follow_their_definitions():
    pairs = [(_proposals(seed), _segments(seed)) for seed in range(3)]
    found = evaluate(pairs, ks=(1, 5))
    per_image = [_reference_ious(p, s) for p, s in pairs]
    best = np.concatenate([i.max(0) for i in per_image])
    top = {k: np.concatenate([i[:k].max(0) for i in per_image]) for k in (1, 5)}
    steps = np.linspace(0.5, 0.95, 10)
    assert found["segments"] == 9
    assert found["R@50"] == pytest.approx((best >= 0.5).mean())
    assert found["R@70"] == pytest.approx((best >= 0.7).mean())
    assert found["ABO"] == pytest.approx(best.mean())
    assert found["AR"] == pytest.approx(np.mean([(best >= x).mean() for x in steps]))
    for k in (1, 5):
        assert found[f"AR@{k}"] == pytest.approx(np.mean([(top[k] >= x).mean() for x in steps]))
    assert found["AR@1"] <= found["AR@5"] <= found["AR"]


def test_a_perfect_proposal_scores_full_recall():
    """One region whose mask is exactly a segment: IoU 1, every metric 1. (Bilinear
    upsampling rounds the corners of a square of positive cells, so the segment is cut
    from the upsampled logits by the formula.)"""
    w, s = 4, 4
    logits = torch.full((w * w, 4, 4), -5.0)
    logits[:, 2, 2] = torch.tensor([-5.0, -5, -5, -5, -5, 5, 5, -5, -5, 5, 5, -5, -5, -5, -5, -5])
    kept = region_nms([logits], [s], [w], 0.5)
    seg = np.zeros((16, 16), np.int64)
    seg[_bilinear(logits[:, 2, 2].numpy().reshape(w, w), s) > 0] = 1  # window at 0..15
    assert seg.sum() == 60
    proposals = Proposals([logits], [s], [w], kept, (16, 16))
    found = evaluate([(proposals, seg)], ks=(1,))
    assert found["segments"] == 1
    assert found["R@50"] == found["R@70"] == found["ABO"] == found["AR"] == found["AR@1"] == 1.0


def test_pictures_paint_exactly_the_masks():
    proposals = _proposals(0)
    image = np.full((HEIGHT, WIDTH, 3), 200, np.uint8)
    kept = np.asarray(kept_picture(image, proposals, count=1))
    mask = _pixel_mask(proposals, 0)
    painted = np.any(kept != 100, axis=2)  # the image dimmed to 100 where nothing is drawn
    assert mask.any()
    # every mask pixel is painted; nothing is painted off the mask but the outline and title
    assert painted[mask].all()
    border = np.zeros_like(mask)
    p, i, j = (int(v) for v in proposals.kept[0, :3])
    s, w = STRIDES[p], WINDOWS[p]
    top, left = max(s * (i - w // 2), 0), max(s * (j - w // 2), 0)
    bottom, right = min(s * (i + w // 2), HEIGHT) - 1, min(s * (j + w // 2), WIDTH) - 1
    border[top:bottom + 1, [left, right]] = border[[top, bottom], left:right + 1] = True
    stray = painted & ~mask & ~border
    stray[:12] = False  # the caption
    assert not stray.any()

    sheet = pathway_picture(image, proposals)
    assert sheet.height == HEIGHT and sheet.width == 3 * WIDTH + 2 * 8


# ------------------------------------------------------------------ the CLI
TINY_REGION_NET = """
name: "TinyRegions"
layer { name: "input" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 32 dim: 48 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 8 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 8 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "regions2" type: "Convolution" bottom: "conv2" top: "regions2"
        convolution_param { num_output: 16 kernel_size: 3 pad: 1
                            weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "regions4" type: "Convolution" bottom: "pool2" top: "regions4"
        convolution_param { num_output: 16 kernel_size: 3 pad: 1
                            weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "t2" type: "RegionTranspose" bottom: "regions2" top: "t2"
        region_transpose_param { window: 4 } }
layer { name: "t4" type: "RegionTranspose" bottom: "regions4" top: "t4"
        region_transpose_param { window: 4 } }
layer { name: "nms" type: "RegionNMS" bottom: "t2" bottom: "t4" top: "regions"
        region_nms_param { threshold: 0.5 stride: 2 stride: 4 window: 4 window: 4 } }
"""


@pytest.fixture
def tiny_scene(tmp_path):
    from PIL import Image

    net = tmp_path / "tiny.prototxt"
    net.write_text(TINY_REGION_NET)
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (32, 48, 3)).astype(np.uint8)
    segments = np.zeros((32, 48), np.uint8)
    segments[4:20, 6:30], segments[16:30, 28:44] = 1, 2
    Image.fromarray(image).save(tmp_path / "image.png")
    Image.fromarray(segments, mode="L").save(tmp_path / "segments.png")
    return net, tmp_path / "image.png", tmp_path / "segments.png", image


def _net_proposals(net, image):
    import netdef
    from netdef.proposals import capture

    module = netdef.load(str(net))
    feed = torch.from_numpy(np.ascontiguousarray(
        image[:, :, ::-1].transpose(2, 0, 1)[None]).astype(np.float32))
    with torch.no_grad(), capture(module, (32, 48)) as found:
        module(data=feed)
    return found[0]


def test_run_draws_the_pathways_and_the_kept_regions(cli, tiny_scene, tmp_path):
    from PIL import Image

    net, image_path, _, image = tiny_scene
    out = tmp_path / "regions.png"
    code, printed, _ = cli("run", str(net), "--input", f"data={image_path}", "--out", str(out))
    assert code == 0 and "regions-kept.png" in printed
    sheet = np.asarray(Image.open(out))
    assert sheet.shape == (32, 2 * 48 + 8, 3)
    kept = np.asarray(Image.open(tmp_path / "regions-kept.png"))
    expected = np.asarray(kept_picture(image, _net_proposals(net, image)))
    np.testing.assert_array_equal(kept, expected)


def test_recall_command_reports_the_metrics_of_the_nets_proposals(cli, tiny_scene):
    import json

    net, image_path, segments_path, image = tiny_scene
    code, printed, _ = cli("recall", str(net), "--pair", str(image_path), str(segments_path),
                           "--top", "1,5", "--json")
    assert code == 0
    segments = np.zeros((32, 48), np.int64)
    segments[4:20, 6:30], segments[16:30, 28:44] = 1, 2
    expected = evaluate([(_net_proposals(net, image), segments)], ks=(1, 5))
    assert json.loads(printed) == pytest.approx(expected)
    assert expected["segments"] == 2 and expected["ABO"] > 0


def test_recall_needs_a_region_net_and_matching_sizes(cli, tiny_scene, tmp_path):
    from PIL import Image

    net, image_path, _, _ = tiny_scene
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((8, 8), np.uint8), mode="L").save(small)
    code, _, err = cli("recall", str(net), "--pair", str(image_path), str(small))
    assert code == 2 and "8x8" in err
    plain = tmp_path / "plain.prototxt"
    plain.write_text(TINY_REGION_NET.split('layer { name: "regions2"')[0])
    segments = tmp_path / "segments.png"
    code, _, err = cli("recall", str(plain), "--pair", str(image_path), str(segments))
    assert code == 2 and "RegionNMS" in err


def test_nms_checks_its_strides_nest():
    import netdef

    bad = TINY_REGION_NET.replace("stride: 2 stride: 4", "stride: 2 stride: 3")
    problems = [str(p) for p in netdef.check(bad)]
    assert any("each stride must divide every coarser one" in p and "'nms'" in p
               for p in problems), problems
    assert not netdef.check(TINY_REGION_NET)
