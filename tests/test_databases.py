"""Caffe's databases: `convert-imageset` and `compute-image-mean` against the images and
numpy, the records' bytes against Caffe's field numbers (decoded by hand here, not by
netdef's schema), and `Data` layers reading LMDB and LevelDB as Caffe does: key order,
rand_skip, cycling, the transformer (crop, mirror, mean, scale) against hand-computed
arrays, and a missing database reported at the layer's line."""
from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from PIL import Image

from netdef.errors import DataError
from netdef.training.data import SourceContext
from netdef.training.databases import Database, datum_image
from netdef.training.train import build_net

pytest.importorskip("lmdb")
pytest.importorskip("plyvel")

BACKENDS = ["lmdb", "leveldb"]


def varint(buffer: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buffer[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if byte < 0x80:
            return value, at


def fields(buffer: bytes) -> dict[int, list]:
    """A protobuf message's fields by number, decoded by hand (varints and byte strings)."""
    found, at = {}, 0
    while at < len(buffer):
        key, at = varint(buffer, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = varint(buffer, at)
        elif wire == 2:
            size, at = varint(buffer, at)
            value, at = buffer[at:at + size], at + size
        else:
            raise AssertionError(f"wire type {wire}")
        found.setdefault(number, []).append(value)
    return found


@pytest.fixture
def images(tmp_path):
    """Six 5 x 7 colour PNGs (one in a folder with a space) and their list, labels 0..5."""
    rng = np.random.default_rng(0)
    (tmp_path / "some dir").mkdir()
    pictures, lines = [], []
    for index in range(6):
        rgb = rng.integers(0, 256, (5, 7, 3), np.uint8)
        name = f"some dir/im{index}.png" if index == 2 else f"im{index}.png"
        Image.fromarray(rgb).save(tmp_path / name)
        pictures.append(rgb)
        lines.append(f"{name} {index}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    return tmp_path, pictures


def records(path, backend) -> list[tuple[bytes, bytes]]:
    database = Database(str(path), backend)
    return [(key, database.record(position)) for position, key in enumerate(database.keys)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_convert_imageset_writes_caffes_datums(cli, images, backend):
    folder, pictures = images
    code, out, _ = cli("convert-imageset", f"{folder}/", folder / "list.txt", folder / "db",
                       "--backend", backend)
    assert code == 0 and "6 records" in out
    written = records(folder / "db", backend)
    assert [key for key, _ in written][:3] == [b"00000000_im0.png", b"00000001_im1.png",
                                               b"00000002_some dir/im2.png"]
    for index, (_, raw) in enumerate(written):
        datum = fields(raw)  # Caffe's Datum: channels 1, height 2, width 3, data 4, label 5
        assert (datum[1], datum[2], datum[3], datum[5]) == ([3], [5], [7], [index])
        bgr_planes = pictures[index][:, :, ::-1].transpose(2, 0, 1)
        assert datum[4] == [bgr_planes.tobytes()]
        assert 7 not in datum  # not encoded


@pytest.mark.parametrize("backend", BACKENDS)
def test_encoded_gray_and_resized_records_read_back(cli, images, backend):
    folder, pictures = images
    cli("convert-imageset", folder, folder / "list.txt", folder / "enc", "--encoded",
        "--backend", backend)
    for index, (_, raw) in enumerate(records(folder / "enc", backend)):
        name = "some dir/im2.png" if index == 2 else f"im{index}.png"
        assert fields(raw)[4] == [(folder / name).read_bytes()]  # the file as it is
        assert fields(raw)[7] == [1]
        image, label = datum_image(raw)
        np.testing.assert_array_equal(image, pictures[index][:, :, ::-1])
        assert label == index
    cli("convert-imageset", folder, folder / "list.txt", folder / "gray", "--gray",
        "--resize_height", "4", "--resize_width", "6", "--backend", backend)
    for index, (_, raw) in enumerate(records(folder / "gray", backend)):
        name = "some dir/im2.png" if index == 2 else f"im{index}.png"
        with Image.open(folder / name) as picture:
            expected = np.asarray(picture.convert("L").resize((6, 4), Image.BILINEAR))
        image, _ = datum_image(raw)
        assert image.shape == (4, 6, 1)
        np.testing.assert_array_equal(image[:, :, 0], expected)


def test_shuffle_is_seeded_and_keeps_every_line(cli, images):
    folder, _ = images
    cli("convert-imageset", folder, folder / "list.txt", folder / "a", "--shuffle")
    cli("convert-imageset", folder, folder / "list.txt", folder / "b", "--shuffle")
    labels = [fields(raw)[5][0] for _, raw in records(folder / "a", "lmdb")]
    assert sorted(labels) == list(range(6)) and labels != list(range(6))
    assert labels == [fields(raw)[5][0] for _, raw in records(folder / "b", "lmdb")]


def test_unreadable_images_are_skipped_with_a_warning(cli, images):
    folder, _ = images
    (folder / "list.txt").write_text("im0.png 0\nmissing.png 1\nim1.png 1\n")
    code, out, err = cli("convert-imageset", folder, folder / "list.txt", folder / "db")
    assert code == 0 and "2 records" in out and "missing.png; skipped" in err
    assert [key for key, _ in records(folder / "db", "lmdb")] == [b"00000000_im0.png",
                                                                 b"00000002_im1.png"]


def test_an_existing_database_is_not_overwritten(cli, images):
    folder, _ = images
    (folder / "db").mkdir()
    code, _, err = cli("convert-imageset", folder, folder / "list.txt", folder / "db")
    assert code == 1 and "exists" in err


@pytest.mark.parametrize("backend", BACKENDS)
def test_compute_image_mean_is_numpys_and_caffes_blobproto(cli, images, backend):
    folder, pictures = images
    cli("convert-imageset", folder, folder / "list.txt", folder / "db", "--backend", backend)
    code, out, _ = cli("compute-image-mean", folder / "db", folder / "mean.binaryproto",
                       "--backend", backend)
    assert code == 0
    expected = np.mean([p[:, :, ::-1].transpose(2, 0, 1).astype(np.float64) for p in pictures],
                       axis=0)
    blob = fields((folder / "mean.binaryproto").read_bytes())
    assert (blob[1], blob[2], blob[3], blob[4]) == ([1], [3], [5], [7])  # num, channels, h, w
    values = np.frombuffer(blob[5][0], "<f4")  # data: packed floats
    np.testing.assert_allclose(values.reshape(3, 5, 7), expected, rtol=1e-6)
    for channel in range(3):
        assert f"mean_value channel [{channel}]: {expected[channel].mean():.6g}" in out


DATA_NET = """name: "d"
layer { name: "data" type: "Data" top: "data" top: "label"
        data_param { source: "%(source)s" backend: %(backend)s batch_size: %(batch)d
                     %(extra)s }
        transform_param { %(transform)s } }
layer { name: "flat" type: "Flatten" bottom: "data" top: "flat" }
layer { name: "silence" type: "Silence" bottom: "flat" bottom: "label" }
"""


def data_source(folder, backend, *, batch=2, extra="", transform="", phase="TRAIN", seed=0):
    net = folder / "net.prototxt"
    net.write_text(DATA_NET % {"source": "db", "backend": backend.upper(), "batch": batch,
                               "extra": extra, "transform": transform})
    fed = build_net(str(net), phase, ctx=SourceContext(seed=seed))
    return fed.feeds[0][0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_data_layer_reads_in_key_order_and_cycles(cli, images, backend):
    folder, pictures = images
    cli("convert-imageset", folder, folder / "list.txt", folder / "db", "--backend", backend)
    source = data_source(folder, backend, batch=4)
    first, second = source.batch(0), source.batch(1)
    assert first[0].shape == (4, 3, 5, 7) and first[1].tolist() == [0, 1, 2, 3]
    assert second[1].tolist() == [4, 5, 0, 1]  # the end of the database wraps to its start
    np.testing.assert_array_equal(second[0][1], pictures[5][:, :, ::-1].transpose(2, 0, 1))


def test_rand_skip_starts_below_it_and_is_seeded(cli, images):
    folder, _ = images
    cli("convert-imageset", folder, folder / "list.txt", folder / "db")
    starts = {int(data_source(folder, "lmdb", batch=1, extra="rand_skip: 5", seed=seed)
                  .batch(0)[1][0]) for seed in range(12)}
    assert starts <= set(range(5)) and len(starts) > 1
    again = data_source(folder, "lmdb", batch=1, extra="rand_skip: 5", seed=3).batch(0)[1]
    assert again == data_source(folder, "lmdb", batch=1, extra="rand_skip: 5", seed=3).batch(0)[1]


def test_transformer_centre_crop_mean_file_and_scale_in_test(cli, images):
    folder, pictures = images
    cli("convert-imageset", folder, folder / "list.txt", folder / "db")
    cli("compute-image-mean", folder / "db", folder / "mean.binaryproto")
    source = data_source(folder, "lmdb", batch=1, phase="TEST",
                         transform='crop_size: 3 mean_file: "mean.binaryproto" scale: 0.5 '
                                   "mirror: true")
    planes = [p[:, :, ::-1].transpose(2, 0, 1).astype(np.float64) for p in pictures]
    mean = np.mean(planes, axis=0)
    mirrored = set()
    for index in range(24):
        # TEST: the centre crop at ((5 - 3) // 2, (7 - 3) // 2); Caffe mirrors in TEST too
        expected = (planes[index % 6] - mean)[:, 1:4, 2:5] * 0.5
        got = source.batch(index)[0][0]
        flipped = not np.allclose(got, expected, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(got, expected[:, :, ::-1] if flipped else expected, rtol=1e-5,
                                   atol=1e-4)
        mirrored.add(flipped)
    assert mirrored == {False, True}


def test_transformer_random_crop_mirror_and_mean_values_in_train(cli, images):
    folder, pictures = images
    cli("convert-imageset", folder, folder / "list.txt", folder / "db")
    source = data_source(folder, "lmdb", batch=1,
                         transform="crop_size: 3 mirror: true mean_value: 10 mean_value: 20 "
                                   "mean_value: 30")
    seen_offsets, seen_mirror = set(), set()
    for index in range(60):
        got = source.batch(index)[0][0]
        plane = pictures[index % 6][:, :, ::-1].transpose(2, 0, 1).astype(np.float64) \
            - np.array([10, 20, 30]).reshape(3, 1, 1)
        crops = {(top, left, flip): plane[:, top:top + 3, left:left + 3][:, :, ::-1 if flip else 1]
                 for top in range(3) for left in range(5) for flip in (False, True)}
        matches = [where for where, crop in crops.items() if np.array_equal(got, crop)]
        assert matches, index  # some crop of the image, mirrored or not
        seen_offsets.update((top, left) for top, left, _ in matches)
        seen_mirror.update(flip for _, _, flip in matches)
    assert len(seen_offsets) > 8 and seen_mirror == {False, True}


def test_missing_database_is_an_error_at_the_data_layer(images):
    folder, _ = images
    with pytest.raises(DataError) as caught:
        data_source(folder, "lmdb")
    problem = caught.value.problems[0]
    assert problem.line == 2 and problem.layer == "data" and "no lmdb database at db" in \
        problem.message


def test_damaged_record_names_its_key(images):
    import lmdb

    folder, _ = images
    with lmdb.open(str(folder / "db"), map_size=1 << 20) as env, env.begin(write=True) as txn:
        txn.put(b"00000000_x", struct.pack("<3B", 0x0A, 0xFF, 0xFF))  # a cut length-delimited field
    with pytest.raises(DataError) as caught:  # build_net reads batch 0 for the shapes
        data_source(folder, "lmdb", batch=1)
    problem = caught.value.problems[0]
    assert problem.line == 2 and "record '00000000_x': a record is not a Datum" in problem.message


def test_source_resolves_beside_the_net_when_not_in_the_working_directory(cli, images,
                                                                           monkeypatch, tmp_path):
    folder, _ = images
    cli("convert-imageset", folder, folder / "list.txt", folder / "db")
    monkeypatch.chdir(tmp_path.parent)
    assert not os.path.exists("db")
    assert data_source(folder, "lmdb", batch=1).batch(0)[0].shape == (1, 3, 5, 7)


TRAIN_NET = """name: "small"
layer { name: "data" type: "Data" top: "data" top: "label"
        data_param { source: "db" backend: LMDB batch_size: %(batch)d }
        transform_param { scale: 0.00390625 } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""
TRAIN_SOLVER = """net: "net%(batch)d.prototxt"
base_lr: 0.5 lr_policy: "fixed" momentum: 0.9 max_iter: 4 snapshot_prefix: "out%(batch)d/snap"
"""


@pytest.mark.slow
def test_two_gloo_processes_read_disjoint_records(cli, tmp_path, monkeypatch):
    """Two processes at batch 2 end where one process at batch 4 does: together they read
    each step's four records, each rank its own two (the same records twice would differ)."""
    import subprocess
    import sys

    from safetensors.numpy import load_file

    from netdef.training.train import train

    from .conftest import ROOT

    rng = np.random.default_rng(1)
    lines = []
    for index in range(16):
        Image.fromarray(rng.integers(0, 256, (6, 6, 3), np.uint8)).save(tmp_path / f"{index}.png")
        lines.append(f"{index}.png {index % 3}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    cli("convert-imageset", tmp_path, tmp_path / "list.txt", tmp_path / "db")
    monkeypatch.chdir(tmp_path)
    for batch in (2, 4):
        (tmp_path / f"net{batch}.prototxt").write_text(TRAIN_NET % {"batch": batch})
        (tmp_path / f"solver{batch}.prototxt").write_text(TRAIN_SOLVER % {"batch": batch})
        (tmp_path / f"out{batch}").mkdir()
    two = subprocess.run([sys.executable, "-m", "netdef", "train", "solver2.prototxt", "--nproc",
                          "2", "--no-progress"], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr
    train("solver4.prototxt", progress=False)
    one, both = load_file("out4/snap_iter_4.safetensors"), load_file("out2/snap_iter_4.safetensors")
    for key in one:
        np.testing.assert_allclose(both[key], one[key], rtol=0, atol=1e-5, err_msg=key)
    (tmp_path / "alone").mkdir()
    alone = subprocess.run([sys.executable, "-m", "netdef", "train", "solver2.prototxt",
                            "--no-progress", "--snapshot-prefix", "alone/snap"],
                           env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                           text=True, timeout=300)
    assert alone.returncode == 0, alone.stderr
    single = load_file("alone/snap_iter_4.safetensors")  # one rank at batch 2: other records
    assert max(np.abs(single[key] - one[key]).max() for key in one) > 1e-3


def test_missing_plyvel_is_named(images, monkeypatch):
    folder, _ = images
    (folder / "db").mkdir()
    monkeypatch.setitem(__import__("sys").modules, "plyvel", None)  # as if it could not install
    with pytest.raises(DataError, match=r"needs the `plyvel` package: pip install plyvel"):
        Database(str(folder / "db"), "leveldb")


def test_a_failed_conversion_leaves_no_database(cli, images):
    folder, _ = images
    code, _, err = cli("convert-imageset", folder, folder / "list.txt", folder / "db",
                       "--encoded", "--encode_type", "tga2")
    assert code == 1 and "cannot encode images as 'tga2'" in err
    assert not (folder / "db").exists()  # a rerun is not told that the database exists
