"""Data sources for training, against the recipes they follow, computed here by hand."""
import sys

import h5py
import numpy as np
import pytest
from PIL import Image

import netdef
from netdef.training.data import SegmentationFolder, SourceContext
from netdef.training.train import build_net


def data_layer(text: str, tmp_path, phase="TEST"):
    """The first layer of a one-layer net, and a context rooted in tmp_path."""
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    net = netdef.parse(str(path))
    return net.layer[0], SourceContext(str(path), phase, seed=3)


def write_rgb(path, rng, height, width):
    array = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return array


def test_image_data_follows_caffes_transformer(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "pics").mkdir()
    images = [write_rgb(tmp_path / "pics" / f"im {i}.png", rng, 10, 12) for i in range(3)]
    (tmp_path / "list.txt").write_text("".join(f"im {i}.png {i + 4}\n" for i in range(3)))
    layer, ctx = data_layer(f"""layer {{ name: "d" type: "ImageData" top: "data" top: "label"
      transform_param {{ crop_size: 8 mean_value: 10 mean_value: 20 mean_value: 30 scale: 0.5 }}
      image_data_param {{ source: "list.txt" root_folder: "{tmp_path}/pics/" batch_size: 2 }} }}
    """, tmp_path)
    source = layer_rule(layer).data_source(layer, ctx)
    data, label = source.batch(0)
    assert data.shape == (2, 3, 8, 8) and list(label) == [4, 5]
    for got, image in zip(data, images):
        bgr = image[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)
        centred = bgr[:, 1:9, 2:10]  # TEST crops the centre: (10-8)/2, (12-8)/2
        expected = (centred - np.array([10, 20, 30], np.float32).reshape(3, 1, 1)) * 0.5
        np.testing.assert_array_equal(got, expected)
    data, label = source.batch(1)  # wraps around the list: items 2, 0
    assert list(label) == [6, 4]


def test_image_data_resizes_and_reads_grey(tmp_path):
    rng = np.random.default_rng(1)
    write_rgb(tmp_path / "a.png", rng, 10, 12)
    (tmp_path / "list.txt").write_text("a.png 1\n")
    layer, ctx = data_layer("""layer { name: "d" type: "ImageData" top: "data" top: "label"
      image_data_param { source: "list.txt" batch_size: 1 new_height: 5 new_width: 7
                         is_color: false } }""", tmp_path)
    data, _ = layer_rule(layer).data_source(layer, ctx).batch(0)
    assert data.shape == (1, 1, 5, 7)


def test_hdf5_data_reads_datasets_named_after_tops_across_files(tmp_path):
    for part, start in (("a", 0), ("b", 3)):
        with h5py.File(tmp_path / f"{part}.h5", "w") as handle:
            handle["x"] = np.arange(start, start + 3, dtype=np.float64)[:, None] * [1, 1]
            handle["y"] = np.arange(start, start + 3)
    (tmp_path / "list.txt").write_text("a.h5\nb.h5\n")
    layer, ctx = data_layer("""layer { name: "d" type: "HDF5Data" top: "x" top: "y"
      hdf5_data_param { source: "list.txt" batch_size: 4 } }""", tmp_path)
    source = layer_rule(layer).data_source(layer, ctx)
    x, y = source.batch(1)  # items 4, 5, 0, 1
    assert list(y) == [4, 5, 0, 1] and x.dtype == np.float32 and x.shape == (4, 2)
    layer.top[1] = "z"
    with pytest.raises(netdef.DataError, match="named after the tops: x, z"):
        layer_rule(layer).data_source(layer, ctx)


def test_dummy_data_fills_each_top(tmp_path):
    layer, ctx = data_layer("""layer { name: "d" type: "DummyData" top: "a" top: "b"
      dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 2 }
                         data_filler { type: "gaussian" std: 2 }
                         data_filler { type: "constant" value: 7 } } }""", tmp_path)
    source = layer_rule(layer).data_source(layer, ctx)
    a, b = source.batch(0)
    assert a.shape == (2, 3) and a.std() > 0.5 and list(b) == [7, 7]
    np.testing.assert_array_equal(source.batch(0)[0], a)  # the same batch, the same numbers


def make_segmentation_folder(root, rng, count=2, size=(6, 8)):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    images, labels = [], []
    for i in range(count):
        images.append(write_rgb(root / "images" / f"{i}.png", rng, *size))
        label = rng.integers(0, 3, size).astype(np.uint8)
        label[0, 0] = 255
        picture = Image.fromarray(label, "P")
        picture.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
        picture.save(root / "labels" / f"{i}.png")
        labels.append(label)
    return images, labels


def test_segmentation_folder_subtracts_the_mean_in_bgr(tmp_path):
    images, labels = make_segmentation_folder(tmp_path / "seg", np.random.default_rng(2))
    source = SegmentationFolder(str(tmp_path / "seg"), mean=(1, 2, 3), shuffle=False)
    for index in range(2):
        image, label = source.batch(index)
        bgr = images[index][:, :, ::-1].astype(np.float32).transpose(2, 0, 1)
        np.testing.assert_array_equal(image[0], bgr - np.array([1, 2, 3], np.float32)[:, None,
                                                                                       None])
        np.testing.assert_array_equal(label[0, 0], labels[index])  # palette indices, 255 kept


def test_fcn_voc_layer_is_served_without_running_python(tmp_path):
    voc = tmp_path / "VOC"
    images, labels = make_segmentation_folder(tmp_path / "plain", np.random.default_rng(4))
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (tmp_path / "plain" / "images").rename(voc / "JPEGImages")
    (tmp_path / "plain" / "labels").rename(voc / "SegmentationClass")
    (voc / "ImageSets" / "Segmentation" / "seg11valid.txt").write_text("1\n")
    layer, ctx = data_layer("""layer { name: "data" type: "Python" top: "data" top: "label"
      python_param { module: "voc_layers" layer: "VOCSegDataLayer"
        param_str: "{'voc_dir': 'VOC', 'split': 'seg11valid', 'mean': (0, 0, 0), 'seed': 1}" } }
    """, tmp_path)
    image, label = layer_rule(layer).data_source(layer, ctx).batch(0)
    np.testing.assert_array_equal(image[0], images[1][:, :, ::-1].transpose(2, 0, 1))
    np.testing.assert_array_equal(label[0, 0], labels[1])


LAYER_CODE = """
import caffe
import numpy as np

class Count(caffe.Layer):
    def setup(self, bottom, top):
        self.step = int(self.param_str)

    def reshape(self, bottom, top):
        top[0].reshape(2, 3)

    def forward(self, bottom, top):
        top[0].data[...] = self.step
        self.step += 1
"""


def test_python_data_layer_runs_only_when_allowed(tmp_path, monkeypatch):
    (tmp_path / "countlayer.py").write_text(LAYER_CODE)
    text = """layer { name: "d" type: "Python" top: "x"
      python_param { module: "countlayer" layer: "Count" param_str: "5" } }"""
    layer, ctx = data_layer(text, tmp_path)
    with pytest.raises(netdef.DataError, match="only with --allow-python-layers"):
        layer_rule(layer).data_source(layer, ctx)
    assert "countlayer" not in sys.modules
    monkeypatch.setattr(sys, "path", list(sys.path))
    ctx.allow_python_layers = True
    source = layer_rule(layer).data_source(layer, ctx)
    assert source.batch(1)[0].tolist() == [[6.0] * 3] * 2
    assert source.batch(0)[0][0, 0] == 5.0


def test_input_layers_take_a_folder_by_name(tmp_path):
    make_segmentation_folder(tmp_path / "seg", np.random.default_rng(5))
    path = tmp_path / "net.prototxt"
    path.write_text("""layer { name: "in" type: "Input" top: "data" top: "label"
      input_param { shape { dim: 1 dim: 3 dim: 100 dim: 100 } shape { dim: 1 dim: 1 dim: 100
                    dim: 100 } } }
    layer { name: "score" type: "Convolution" bottom: "data" top: "score"
      convolution_param { num_output: 3 kernel_size: 1 } }
    layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss"
      loss_param { ignore_label: 255 } }""")
    folder = SegmentationFolder(str(tmp_path / "seg"))
    fed = build_net(str(path), "TRAIN", ctx=SourceContext(), data={"in": folder})
    inputs = fed.inputs(0, None, "cpu")
    assert inputs["data"].shape == (1, 3, 6, 8)  # the folder's size, not the file's
    assert fed.objective(fed.module(**inputs)).item() > 0
    with pytest.raises(netdef.DataError, match="data given for nope, which names no data layer"):
        build_net(str(path), "TRAIN", ctx=SourceContext(), data={"in": folder, "nope": folder})


def layer_rule(layer):
    from netdef.compiler.layers import registry
    return registry()[layer.type]


def test_cli_feeds_train_and_test_input_layers_from_folders(tmp_path, monkeypatch, cli):
    make_segmentation_folder(tmp_path / "seg", np.random.default_rng(6), count=3)
    (tmp_path / "seg" / "val.txt").write_text("2\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text("""name: "tiny-seg"
    layer { name: "in" type: "Input" top: "data" top: "label"
      input_param { shape { dim: 1 dim: 3 dim: 6 dim: 8 } shape { dim: 1 dim: 1 dim: 6 dim: 8 } } }
    layer { name: "score" type: "Convolution" bottom: "data" top: "score"
      convolution_param { num_output: 3 kernel_size: 1 weight_filler { type: "xavier" } } }
    layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss"
      loss_param { ignore_label: 255 } }""")
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 1e-4\n'
                                              'lr_policy: "fixed"\nmax_iter: 2\ntest_iter: 1\n'
                                              'test_interval: 1\nsnapshot_prefix: "out/s"\n')
    (tmp_path / "out").mkdir()
    code, _, err = cli("train", "solver.prototxt", "--data", "seg", "--test-data", "in=seg",
                       "--mean", "0", "--no-progress")
    assert code == 0, err
    rows = (tmp_path / "out" / "s_test.csv").read_text().splitlines()
    assert rows[0] == "iteration,test_net,output,value"
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1", "2"]


def test_data_errors_point_at_the_data_layer(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "list.txt").write_text("missing.png 0\n")
    (tmp_path / "broken.py").write_text("import caffe\nclass Broken(caffe.Layer):\n"
                                        "    def setup(self, bottom, top):\n"
                                        "        raise ValueError('no such split')\n")
    nets = {"images.prototxt": ('layer { name: "d" type: "ImageData" top: "data" top: "label"\n'
                                '  image_data_param { source: "list.txt" batch_size: 1 } }\n',
                                "images.prototxt:1: layer 'd' (ImageData): cannot read image "
                                "missing.png"),
            "python.prototxt": ('# a user layer\nlayer { name: "p" type: "Python" top: "x"\n'
                                '  python_param { module: "broken" layer: "Broken" } }\n',
                                "python.prototxt:2: layer 'p' (Python): broken.Broken.setup "
                                "raised ValueError: no such split")}
    for name, (text, message) in nets.items():
        (tmp_path / name).write_text(text)
        (tmp_path / "s.prototxt").write_text(f'net: "{name}"\nbase_lr: 1\nlr_policy: "fixed"\n')
        code, _, err = cli("train", "s.prototxt", "--allow-python-layers")
        assert code == 1 and message in err and "Traceback" not in err, err
