"""SSD's AnnotatedData: boxes follow the image through every augmentation. Each object is
painted into its image as a flat colour, so after expansion, sampled crops and mirroring the
label's box must frame exactly the pixels of that colour (read back from the output image,
an independent check of the geometry). The HSV conversions and distortions are checked
against OpenCV's (test-only), the samplers against their constraints, and the label rows
against the layout MultiBoxLoss reads."""
from __future__ import annotations

import numpy as np
import pytest

from netdef.proto import netdef_pb2 as pb
from netdef.training.annotated import bgr_to_hsv, hsv_to_bgr, jaccard, samples
from netdef.training.data import SourceContext
from netdef.training.databases import image_datum
from netdef.training.train import build_net

lmdb = pytest.importorskip("lmdb")

# per image: (label, xmin, ymin, xmax, ymax) in pixels of a 60 x 80 picture
OBJECTS = [[(3, 10, 8, 30, 40), (7, 50, 20, 75, 50)], [(1, 20, 10, 60, 50)],
           [(2, 0, 30, 25, 60), (5, 40, 0, 80, 22)], []]
COLOURS = {1: (250, 0, 0), 2: (0, 250, 0), 3: (0, 0, 250), 5: (250, 250, 0), 7: (0, 250, 250)}
HEIGHT, WIDTH = 60, 80


def write_database(folder) -> None:
    """Grey pictures with each object a flat rectangle of its class's colour."""
    with lmdb.open(str(folder / "db"), map_size=1 << 26) as env, env.begin(write=True) as txn:
        for index, objects in enumerate(OBJECTS):
            image = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
            record = pb.AnnotatedDatum(type=pb.AnnotatedDatum.BBOX)
            for instance, (label, x0, y0, x1, y1) in enumerate(objects):
                image[y0:y1, x0:x1] = COLOURS[label]
                group = record.annotation_group.add(group_label=label)
                group.annotation.add(instance_id=instance, bbox=pb.NormalizedBBox(
                    xmin=x0 / WIDTH, ymin=y0 / HEIGHT, xmax=x1 / WIDTH, ymax=y1 / HEIGHT,
                    difficult=label == 5))
            record.datum.CopyFrom(image_datum(image, 0))
            txn.put(f"{index:08d}".encode(), record.SerializeToString())


NET = """layer {{ name: "data" type: "AnnotatedData" top: "data" top: "label"
  transform_param {{ {transform} }}
  data_param {{ source: "db" batch_size: {batch} backend: LMDB }}
  annotated_data_param {{ {samplers} }} }}
layer {{ name: "flat" type: "Flatten" bottom: "data" top: "flat" }}
layer {{ name: "silence" type: "Silence" bottom: "flat" bottom: "label" }}
"""


def source(folder, transform="", samplers="", batch=1, seed=0):
    (folder / "net.prototxt").write_text(NET.format(transform=transform, samplers=samplers,
                                                    batch=batch))
    return build_net(str(folder / "net.prototxt"), "TRAIN", ctx=SourceContext(seed=seed)).feeds[0][0]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    write_database(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def painted_frame(image: np.ndarray, colour) -> tuple | None:
    """(xmin, ymin, xmax, ymax) in pixels of the area painted `colour` (channel planes)."""
    hit = np.all(np.abs(image - np.array(colour, float).reshape(3, 1, 1)) < 1, axis=0)
    if not hit.any():
        return None
    rows, columns = np.nonzero(hit)
    return columns.min(), rows.min(), columns.max() + 1, rows.max() + 1


def assert_boxes_frame_their_paint(image, label_rows, item):
    height, width = image.shape[1:]
    for row in label_rows[label_rows[:, 0] == item]:
        painted = painted_frame(image, COLOURS[int(row[1])])
        assert painted is not None
        box = (row[3] * width, row[4] * height, row[5] * width, row[6] * height)
        # 2 pixels: the fork crops at whole pixels (the crop's corner truncated) but projects
        # the boxes onto the exact normalised crop, as netdef does after it
        np.testing.assert_allclose(box, painted, atol=2.01, err_msg=f"class {int(row[1])}")


def test_plain_records_give_the_pixels_and_the_label_rows(folder):
    data, label = source(folder, 'mean_value: 128 mean_value: 128 mean_value: 128', batch=4).batch(0)
    assert data.shape == (4, 3, HEIGHT, WIDTH)
    rows = label.reshape(-1, 8)
    expected = [[item, obj[0], instance, obj[1] / WIDTH, obj[2] / HEIGHT, obj[3] / WIDTH,
                 obj[4] / HEIGHT, float(obj[0] == 5)]
                for item, objects in enumerate(OBJECTS) for instance, obj in enumerate(objects)]
    np.testing.assert_allclose(rows, expected, rtol=1e-6)
    assert data[0, :, 0, 0].tolist() == [0, 0, 0]  # the grey background minus the mean


def test_a_batch_without_boxes_is_one_row_of_minus_ones(folder):
    _, label = source(folder, batch=1).batch(3)  # the fourth picture has no objects
    assert label.tolist() == [[[[-1] * 8]]]


@pytest.mark.parametrize("seed", range(6))
def test_expansion_samplers_and_mirror_keep_boxes_on_their_objects(folder, seed):
    transform = ("mirror: true expand_param { prob: 1 max_expand_ratio: 3 } "
                 "emit_constraint { emit_type: CENTER }")
    samplers = ("batch_sampler { sampler { min_scale: 0.4 max_scale: 1 min_aspect_ratio: 0.5 "
                "max_aspect_ratio: 2 } sample_constraint { min_jaccard_overlap: 0.1 } "
                "max_sample: 1 max_trials: 50 }")
    feed = source(folder, transform, samplers, seed=seed)
    for index in range(12):
        data, label = feed.batch(index)
        rows = label.reshape(-1, 8)
        if rows[0, 0] == -1:
            continue
        assert_boxes_frame_their_paint(data[0], rows, 0)
        for row in rows:  # the emit constraint: a kept box's centre was inside the crop
            assert 0 <= row[3] < row[5] <= 1 and 0 <= row[4] < row[6] <= 1


def test_warp_resize_keeps_boxes_in_normalised_coordinates(folder):
    transform = "resize_param { resize_mode: WARP height: 30 width: 30 interp_mode: NEAREST }"
    data, label = source(folder, transform).batch(0)
    assert data.shape == (1, 3, 30, 30)
    assert_boxes_frame_their_paint(data[0], label.reshape(-1, 8), 0)


def test_sampled_boxes_meet_their_constraint():
    sampler = pb.BatchSampler(max_trials=2000, max_sample=30)
    sampler.sampler.min_scale, sampler.sampler.max_scale = 0.3, 1.0
    sampler.sampler.min_aspect_ratio, sampler.sampler.max_aspect_ratio = 0.5, 2.0
    sampler.sample_constraint.min_jaccard_overlap = 0.5
    objects = np.array([[0.1, 0.1, 0.5, 0.6], [0.6, 0.5, 0.9, 0.9]])
    found = samples(sampler, objects, np.random.default_rng(0))
    assert len(found) == 30  # max_sample stops the draws
    sampler.ClearField("sample_constraint")
    anything = samples(sampler, objects, np.random.default_rng(0))
    assert sum(max(jaccard(box, target) for target in objects) < 0.5 for box in anything) > 20
    for box in found:
        assert max(jaccard(box, target) for target in objects) >= 0.5
        assert 0 <= box[0] < box[2] <= 1 + 1e-9 and 0 <= box[1] < box[3] <= 1 + 1e-9
        scale2 = (box[2] - box[0]) * (box[3] - box[1])
        assert 0.09 - 1e-9 <= scale2 <= 1 + 1e-9


def test_hsv_conversions_match_opencv():
    cv2 = pytest.importorskip("cv2")
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    ours, theirs = bgr_to_hsv(image).astype(int), cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(int)
    hue_gap = np.minimum(np.abs(ours[..., 0] - theirs[..., 0]), 180 - np.abs(ours[..., 0] - theirs[..., 0]))
    assert hue_gap.max() <= 1 and np.abs(ours[..., 1:] - theirs[..., 1:]).max() <= 1
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    hsv[..., 0] = np.clip(hsv[..., 0].astype(int) + 17, 0, 255)  # a hue shift past 180 wraps
    np.testing.assert_allclose(hsv_to_bgr(hsv).astype(int),
                               cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR).astype(int), atol=1)


def test_distortion_changes_colour_not_geometry(folder):
    transform = ("distort_param { brightness_prob: 1 brightness_delta: 32 contrast_prob: 1 "
                 "contrast_lower: 0.5 contrast_upper: 1.5 hue_prob: 1 hue_delta: 18 "
                 "saturation_prob: 1 saturation_lower: 0.5 saturation_upper: 1.5 }")
    plain, _ = source(folder).batch(0)
    distorted, label = source(folder, transform).batch(0)
    assert not np.array_equal(plain, distorted)
    background = distorted[0][:, 0, 0]
    assert np.all(distorted[0][:, :5, :5] == background[:, None, None])  # still flat
    assert label.shape == (1, 1, 2, 8)


@pytest.mark.slow
def test_ssd_train_file_trains_and_its_loss_falls(tmp_path, monkeypatch):
    """SSD300's train.prototxt from the fork, its database path pointed at eight generated
    pictures with painted boxes: a few SGD steps and the MultiBoxLoss falls."""
    from netdef.training.train import make_trainer

    from .conftest import ROOT

    ssd = ROOT.parent / "shared" / "corpus-forks" / "xzgz+caffe-ssd" / "models" / "VGGNet" / \
        "VOC0712" / "SSD_300x300" / "train.prototxt"
    write_database(tmp_path)
    text = ssd.read_text().replace('"examples/VOC0712/VOC0712_trainval_lmdb"', f'"{tmp_path}/db"')
    (tmp_path / "train.prototxt").write_text(text)
    (tmp_path / "solver.prototxt").write_text(
        f'net: "{tmp_path}/train.prototxt"\nbase_lr: 0.0005\nlr_policy: "fixed"\n'
        f'momentum: 0.9\nweight_decay: 0.0005\nmax_iter: 100\nsnapshot_prefix: "{tmp_path}/s"\n')
    monkeypatch.chdir(tmp_path)
    trainer = make_trainer(str(tmp_path / "solver.prototxt"), log=False, progress=False)
    losses = [trainer.step() for _ in range(6)]
    assert all(np.isfinite(losses)) and np.mean(losses[-2:]) < 0.8 * losses[0], losses


def test_records_without_an_annotation_type_give_their_datums_labels(tmp_path, monkeypatch):
    """The fork: no AnnotationType on the records (nor anno_type on the layer) means the
    datum's label is the label, one per item."""
    with lmdb.open(str(tmp_path / "db"), map_size=1 << 24) as env, env.begin(write=True) as txn:
        for index in range(3):
            image = np.full((6, 8, 3), index, np.uint8)
            record = pb.AnnotatedDatum(datum=image_datum(image, 10 + index))
            txn.put(f"{index:08d}".encode(), record.SerializeToString())
    monkeypatch.chdir(tmp_path)
    data, label = source(tmp_path, batch=3).batch(0)
    assert label.tolist() == [10, 11, 12] and data[:, 0, 0, 0].tolist() == [0, 1, 2]


@pytest.mark.parametrize("transform, samplers, message", [
    ("expand_param { prob: 1 max_expand_ratio: 1000000 }", "", r"max_expand_ratio 1e\+06 is over"),
    ("", "batch_sampler { max_trials: 4000000000 }", "max_trials 4000000000 is over"),
    ("resize_param { height: 10000 width: 10000 }", "", "resize_param 10000 x 10000"),
])
def test_numbers_that_would_hang_or_exhaust_memory_are_refused(folder, transform, samplers,
                                                              message):
    from netdef.errors import DataError

    with pytest.raises(DataError, match=message) as caught:
        source(folder, transform, samplers)
    assert caught.value.problems[0].line == 1  # at the data layer


def test_a_crop_larger_than_the_image_is_a_data_error(folder):
    from netdef.errors import DataError

    wanted = r"record .00000000.: crop_size 100 exceeds the image \(60 x 80\)"
    with pytest.raises(DataError, match=wanted) as caught:
        source(folder, "crop_size: 100")  # batch 0 is read to size the net
    assert caught.value.problems[0].line == 1
