"""Data sources for training: what feeds each data layer's tops, batch by batch.

Every source serves numbered batches. Batch k of rank r among W processes is
global batch k * W + r, so W processes with batch B see, step by step, exactly
the items one process with batch W * B would see (the sharding that makes a
distributed run equal to a single one). Item sources (image lists, HDF5 files,
segmentation folders, dummy fillers) address items directly, reshuffled per
epoch from the seed; a user's Python layer is a stream, read in order.

Images are read as Caffe's OpenCV does: channels in BGR order, H x W x C
transposed to C x H x W, then Caffe's DataTransformer (crop, mirror, mean,
scale) for ImageData, and FCN's data layers' recipe (BGR minus the mean, no
scaling; labels as 1 x H x W) for segmentation folders.
"""
from __future__ import annotations

import ast
import importlib
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from ..compiler.sidefiles import read_lines

from ..errors import DataError, Problem

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff")
# The ILSVRC mean in BGR order, as the FCN project's data layers subtract it
FCN_MEAN = (104.00699, 116.66877, 122.67892)


@dataclass
class SourceContext:
    """Where relative paths start, and what the run allows."""

    net_path: str = "<string>"
    phase: str = "TRAIN"
    seed: int = 0
    allow_python_layers: bool = False

    def resolve(self, path: str) -> str:
        return resolve_near(path, self.net_path)


def resolve_near(path: str, anchor: str) -> str:
    """Caffe reads paths from the working directory; netdef then tries the folder of the
    file that names them (`anchor`)."""
    if os.path.isabs(path) or os.path.exists(path) or not os.path.isfile(anchor):
        return path
    beside = os.path.join(os.path.dirname(os.path.abspath(anchor)), path)
    return beside if os.path.exists(beside) else path


def data_error(message: str, where: str = "<data>", layer=None) -> DataError:
    problem = Problem(DataError, message, where)
    if layer is not None:
        problem.layer, problem.layer_type = layer.name, layer.type
    return DataError(problems=[problem])


class Source:
    """Serves global batch k as one array per top, batch axis first."""

    batch_size = 1

    def batch(self, index: int) -> list[np.ndarray]:
        raise NotImplementedError


class Prefetching(Source):
    """Reads the next batch on a background thread while the caller trains on this one, as
    Caffe's prefetch queue does (one batch deep). The next index is the last one plus the
    last step between requests (the world size, in distributed training); reads stay one at
    a time and in order, and a batch comes out the same however it was read."""

    def __init__(self, source: Source):
        from concurrent.futures import ThreadPoolExecutor

        self.source, self.batch_size = source, source.batch_size
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="netdef-data")
        self._ahead, self._last = None, None

    def batch(self, index: int) -> list[np.ndarray]:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == index:
            arrays = ahead[1].result()
        else:
            if ahead is not None:
                ahead[1].exception()  # let a guess that missed finish before reading on
            arrays = self.source.batch(index)
        step = index - self._last if self._last is not None and index > self._last else 1
        self._last = index
        self._ahead = (index + step, self._reader.submit(self.source.batch, index + step))
        return arrays


class ItemSource(Source):
    """A source of numbered items; batches are consecutive items of a per-epoch order."""

    shuffle = False
    seed = 0

    def __len__(self) -> int:
        raise NotImplementedError

    def item(self, index: int, rng: np.random.Generator) -> list[np.ndarray]:
        raise NotImplementedError

    def batch(self, index: int) -> list[np.ndarray]:
        items = [self._item_at(index * self.batch_size + j) for j in range(self.batch_size)]
        return [_stack([item[top] for item in items], top) for top in range(len(items[0]))]

    def _item_at(self, position: int) -> list[np.ndarray]:
        count = len(self)
        epoch, offset = divmod(position, count)
        order = offset
        if self.shuffle:
            order = int(np.random.default_rng((self.seed, epoch)).permutation(count)[offset])
        return self.item(order, np.random.default_rng((self.seed, epoch, order)))


def _stack(arrays: list[np.ndarray], top: int) -> np.ndarray:
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise data_error(f"top {top}: items of one batch differ in shape ({sorted(shapes)}); "
                         "use batch_size 1 or resize them to one size")
    return np.stack(arrays)


# ------------------------------------------------------------------ images
def read_image(path: str, color: bool = True) -> np.ndarray:
    """H x W x C (BGR) or H x W x 1, uint8, as OpenCV's imread gives Caffe."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB" if color else "L"))
    except (OSError, ValueError) as exc:
        raise data_error(f"cannot read image {path}: {exc}") from None
    return array[:, :, ::-1] if color else array[:, :, None]


def read_label(path: str) -> np.ndarray:
    """A label PNG as class indices (palette images keep their indices), 1 x H x W."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            array = np.asarray(image if image.mode in ("P", "L", "I", "I;16") else image.convert("L"))
    except (OSError, ValueError) as exc:
        raise data_error(f"cannot read label image {path}: {exc}") from None
    return array[None].astype(np.float32)


@dataclass
class Transform:
    """Caffe's DataTransformer: crop (random in TRAIN, centred in TEST), mirror (at random,
    in both phases, as Caffe does), subtract the mean (a C x H x W blob or per-channel
    values), then scale."""

    scale: float = 1.0
    mirror: bool = False
    crop_size: int = 0
    mean: np.ndarray | None = None  # C x H x W blob
    mean_values: tuple = ()
    train: bool = True

    @classmethod
    def from_param(cls, param, ctx: SourceContext) -> "Transform":
        mean = None
        if param.mean_file:
            mean = _mean_image(ctx.resolve(param.mean_file), ctx)
        return cls(param.scale, param.mirror, param.crop_size, mean, tuple(param.mean_value),
                   ctx.phase == "TRAIN")

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        data = image.astype(np.float32).transpose(2, 0, 1)  # C x H x W
        channels, height, width = data.shape
        top, left = 0, 0
        if self.crop_size:
            size = self.crop_size
            if size > height or size > width:
                raise data_error(f"crop_size {size} exceeds the image ({height} x {width})")
            if self.train:
                top, left = int(rng.integers(height - size + 1)), int(rng.integers(width - size + 1))
            else:
                top, left = (height - size) // 2, (width - size) // 2
            data = data[:, top:top + size, left:left + size]
        if self.mean is not None:
            mean = self.mean[:, top:top + data.shape[1], left:left + data.shape[2]]
            if mean.shape != data.shape:
                raise data_error(f"the mean file's blob ({self.mean.shape}) does not cover the "
                                 f"images ({image.shape[0]} x {image.shape[1]})")
            data = data - mean
        elif self.mean_values:
            values = np.asarray(self.mean_values, np.float32)
            if len(values) not in (1, channels):
                raise data_error(f"{len(values)} mean_value values for {channels} channels")
            data = data - values.reshape(-1, 1, 1)
        if self.mirror and rng.integers(2):  # in either phase, as Caffe's transformer does
            data = data[:, :, ::-1]
        return np.ascontiguousarray(data * self.scale, dtype=np.float32)


class ImageList(ItemSource):
    """ImageData: a text file of `path label` lines (the path may hold spaces)."""

    def __init__(self, layer, ctx: SourceContext):
        param = layer.image_data_param
        listing = ctx.resolve(param.source)
        try:
            lines = read_lines(listing)
        except OSError as exc:
            raise data_error(f"cannot read the image list {listing}: {exc.strerror}",
                             layer=layer) from None
        self.entries = []
        for number, line in enumerate(lines, 1):
            path, _, label = line.rpartition(" ")
            try:
                self.entries.append((path or label, int(label) if path else 0))
            except ValueError:
                raise data_error(f"{listing}:{number}: expected 'path label', got {line!r}",
                                 layer=layer) from None
        if not self.entries:
            raise data_error(f"the image list {listing} is empty", layer=layer)
        self.root = param.root_folder
        self.size = (param.new_height, param.new_width)
        self.color = param.is_color
        self.transform = Transform.from_param(layer.transform_param, ctx)
        self.batch_size, self.shuffle, self.seed = param.batch_size, param.shuffle, ctx.seed
        self.ctx, self.tops = ctx, len(layer.top)

    def __len__(self):
        return len(self.entries)

    def item(self, index, rng):
        path, label = self.entries[index]
        image = read_image(self.ctx.resolve(self.root + path), self.color)
        if all(self.size):
            image = _resized(image, self.size)
        return [self.transform(image, rng), np.float32(label)][:self.tops]


class DatabaseRecords(ItemSource):
    """Data: the Datum records of an LMDB or LevelDB in key order, cycling at the end as
    Caffe's cursor does, after skipping a seeded random count below `rand_skip` (Caffe's
    start); then Caffe's transformer. The label top is each record's label."""

    def __init__(self, layer, ctx: SourceContext):
        from .databases import Database, backend_name

        param = layer.data_param
        backend = backend_name(param.backend)
        try:
            self.database = Database(ctx.resolve(param.source), backend)
        except DataError as exc:
            raise data_error(f"data_param.source: {exc}", layer=layer) from None
        skip = np.random.default_rng((ctx.seed, 7)).integers(param.rand_skip) \
            if param.rand_skip else 0
        self.skip = int(skip)
        self.transform = Transform.from_param(layer.transform_param, ctx)
        self.force = (layer.transform_param.force_color, layer.transform_param.force_gray)
        self.batch_size, self.tops = param.batch_size, len(layer.top)

    def __len__(self):
        return len(self.database)

    def item(self, index, rng):
        from .databases import datum_image

        position = (index + self.skip) % len(self.database)
        try:
            image, label = datum_image(self.database.record(position), *self.force)
        except DataError as exc:
            key = self.database.keys[position].decode(errors="replace")
            raise data_error(f"{self.database.path}: record {key!r}: {exc}") from None
        return [self.transform(image, rng), np.float32(label)][:self.tops]


def _resized(image: np.ndarray, size: tuple) -> np.ndarray:
    from PIL import Image

    height, width = size
    squeeze = image.shape[2] == 1
    picture = Image.fromarray(image[:, :, 0] if squeeze else np.ascontiguousarray(image))
    array = np.asarray(picture.resize((width, height), Image.BILINEAR))
    return array[:, :, None] if squeeze else array


class HDF5Files(ItemSource):
    """HDF5Data: the files listed in `source`, each with one dataset per top, items along
    the first axis, in file order."""

    def __init__(self, layer, ctx: SourceContext):
        import h5py

        param = layer.hdf5_data_param
        listing = ctx.resolve(param.source)
        try:
            paths = [ctx.resolve(line) for line in read_lines(listing)]
        except OSError as exc:
            raise data_error(f"cannot read the HDF5 list {listing}: {exc.strerror}",
                             layer=layer) from None
        self.tops, self.chunks = list(layer.top), []
        for path in paths:
            try:
                with h5py.File(path, "r") as handle:
                    arrays = [np.asarray(handle[top], np.float32) for top in self.tops]
            except (OSError, KeyError) as exc:
                raise data_error(f"{path}: {exc} (the datasets must be named after the tops: "
                                 f"{', '.join(self.tops)})", layer=layer) from None
            if len({len(a) for a in arrays}) != 1:
                raise data_error(f"{path}: the datasets hold different numbers of items",
                                 layer=layer)
            self.chunks.append(arrays)
        self.items = [(c, i) for c, arrays in enumerate(self.chunks) for i in range(len(arrays[0]))]
        if not self.items:
            raise data_error(f"no items in the files listed in {listing}", layer=layer)
        self.batch_size, self.shuffle, self.seed = param.batch_size, param.shuffle, ctx.seed

    def __len__(self):
        return len(self.items)

    def item(self, index, rng):
        chunk, position = self.items[index]
        return [arrays[position] for arrays in self.chunks[chunk]]


class Dummy(ItemSource):
    """DummyData: each item of each top drawn from its filler (seeded per item)."""

    def __init__(self, layer, ctx: SourceContext, shapes: list[tuple]):
        if not shapes or any(shape is None for shape in shapes):
            raise data_error("give every top a shape", ctx.net_path, layer)
        param = layer.dummy_data_param
        fillers = list(param.data_filler) or [None]
        self.fillers = fillers * len(shapes) if len(fillers) == 1 else fillers
        self.shapes = shapes
        self.batch_size, self.seed = shapes[0][0], ctx.seed

    def __len__(self):
        return 1 << 30

    def item(self, index, rng):
        from ..compiler.fillers import fill

        return [fill(shape[1:], filler, rng) for shape, filler in zip(self.shapes, self.fillers)]


class SegmentationFolder(ItemSource):
    """Images and label PNGs, as the FCN project's data layers read them.

    Layouts: `images/` + `labels/` (matched by file stem), or PASCAL VOC's
    `JPEGImages/` + `SegmentationClass/` + `ImageSets/Segmentation/<split>.txt`.
    A `<split>.txt` of stems in the folder (or VOC's) picks and orders items.
    Each image becomes 3 x H x W, BGR, minus `mean`; each label 1 x H x W.
    """

    LAYOUTS = (("images", "labels", "{split}.txt"),
               ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation/{split}.txt"))

    def __init__(self, folder: str, *, split: str = "train", mean=FCN_MEAN, batch_size: int = 1,
                 shuffle: bool = True, seed: int = 0):
        self.folder = folder
        layout = next((names for names in self.LAYOUTS
                       if os.path.isdir(os.path.join(folder, names[0]))), None)
        if layout is None:
            raise data_error(f"{folder}: not a segmentation folder (expected images/ and "
                             "labels/, or VOC's JPEGImages/ and SegmentationClass/)")
        self.image_dir, self.label_dir = (os.path.join(folder, name) for name in layout[:2])
        listing = os.path.join(folder, layout[2].format(split=split))
        self.stems = _stems(listing) if os.path.isfile(listing) else sorted(
            os.path.splitext(name)[0] for name in os.listdir(self.label_dir)
            if name.endswith(".png"))
        if not self.stems:
            raise data_error(f"{folder}: no labelled images")
        self.mean = np.asarray(mean, np.float32).reshape(-1, 1, 1)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed

    def __len__(self):
        return len(self.stems)

    def item(self, index, rng):
        stem = self.stems[index]
        image = read_image(self._image_path(stem)).astype(np.float32).transpose(2, 0, 1)
        label = read_label(os.path.join(self.label_dir, stem + ".png"))
        if label.shape[1:] != image.shape[1:]:
            raise data_error(f"{stem}: label {label.shape[1:]} and image {image.shape[1:]} "
                             "differ in size")
        return [np.ascontiguousarray(image - self.mean), label]

    def _image_path(self, stem: str) -> str:
        for suffix in IMAGE_SUFFIXES:
            path = os.path.join(self.image_dir, stem + suffix)
            if os.path.exists(path):
                return path
        raise data_error(f"{self.image_dir}: no image for label {stem}.png")


def _stems(listing: str) -> list[str]:
    return [line.split()[0] for line in read_lines(listing)]


# ------------------------------------------------------------------ Python layers
# The FCN project's data layers, served without running its code: (module, class) -> folder key
FCN_LAYERS = {("voc_layers", "VOCSegDataLayer"): "voc_dir"}


def python_source(layer, ctx: SourceContext) -> Source:
    param = layer.python_param
    settings = _literal(param.param_str)
    key = FCN_LAYERS.get((param.module, param.layer))
    if key and isinstance(settings, dict) and key in settings:
        return SegmentationFolder(ctx.resolve(settings[key]), split=settings.get("split", "train"),
                                  mean=settings.get("mean", FCN_MEAN),
                                  shuffle=settings.get("randomize", True),
                                  seed=settings.get("seed", ctx.seed))
    if not ctx.allow_python_layers:
        raise data_error(f"a Python data layer ({param.module}.{param.layer}) runs the user's "
                         "code; netdef imports it only with --allow-python-layers "
                         "(allow_python_layers=True)", ctx.net_path, layer)
    return PythonLayer(layer, ctx)


def _literal(text: str):
    try:
        return ast.literal_eval(text) if text else None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


class _Blob:
    """What a pycaffe layer sees of a top: reshape() and .data."""

    def __init__(self):
        self.data = np.zeros((0,), np.float32)

    def reshape(self, *shape):
        self.data = np.zeros(shape, np.float32)

    @property
    def shape(self):
        return self.data.shape


@dataclass
class PythonLayer(Source):
    """A user's pycaffe data layer, run as pycaffe would: setup, then reshape and forward
    per batch. `import caffe` inside it gets netdef.spec where Caffe is not installed."""

    layer: object
    ctx: SourceContext
    read: int = 0
    cache: dict = field(default_factory=dict)

    def __post_init__(self):
        param = self.layer.python_param
        folder = os.path.dirname(os.path.abspath(self.ctx.net_path))
        if os.path.isdir(folder) and folder not in sys.path:
            sys.path.insert(0, folder)
        if "caffe" not in sys.modules and importlib.util.find_spec("caffe") is None:
            from .. import spec
            sys.modules["caffe"] = spec
        try:
            cls = getattr(importlib.import_module(param.module), param.layer)
        except (ImportError, AttributeError) as exc:
            raise data_error(f"cannot import {param.module}.{param.layer}: {exc}",
                             self.ctx.net_path, self.layer) from None
        self.instance = cls()
        self.instance.param_str = param.param_str
        self.instance.phase = 0 if self.ctx.phase == "TRAIN" else 1
        self.tops = [_Blob() for _ in self.layer.top]
        self._call("setup")

    def _call(self, method: str) -> None:
        """The user's method; what it raises becomes a DataError naming the class."""
        try:
            getattr(self.instance, method)([], self.tops)
        except Exception as exc:  # the user's code: any failure is a failure of the data
            param = self.layer.python_param
            raise data_error(f"{param.module}.{param.layer}.{method} raised "
                             f"{type(exc).__name__}: {exc}", self.ctx.net_path,
                             self.layer) from None

    def batch(self, index):
        while self.read <= index:
            self._call("reshape")
            self._call("forward")
            self.cache[self.read] = [np.array(top.data, np.float32) for top in self.tops]
            self.read += 1
            self.cache.pop(self.read - 64, None)  # ranks read nearby batches only
        if index not in self.cache:
            raise data_error("a Python data layer is a stream: batches must be read in order")
        return self.cache[index]


def _mean_image(path: str, ctx) -> np.ndarray:
    """transform_param.mean_file: a BlobProto of C x H x W (leading axes of 1 allowed)."""
    from ..compiler.weights import WireError, read_blob_file

    try:
        blob = read_blob_file(path)
        if blob.ndim < 3 or blob.size != int(np.prod(blob.shape[-3:])):
            raise WireError(f"a blob of shape {'x'.join(map(str, blob.shape))} is not C x H x W")
    except OSError as exc:
        raise data_error(f"cannot read the mean_file {path}: {exc.strerror or exc}",
                         ctx.net_path) from None
    except WireError as exc:
        raise data_error(f"the mean_file {path} is not a mean image: {exc}", ctx.net_path) \
            from None
    return np.asarray(blob, np.float32).reshape(blob.shape[-3:])


def annotated_records(layer, ctx: SourceContext) -> Source:
    """SSD's AnnotatedData source (annotated.py), reached through this module as every data
    layer's source is."""
    from .annotated import AnnotatedRecords

    return AnnotatedRecords(layer, ctx)
