"""Caffe's databases: LMDB and LevelDB holding one Datum record per image, read as
Caffe's `Data` layer reads them and written as its `convert_imageset` writes them.

Records are served in key order. A Datum carries raw pixels (`data`: uint8, C x H x W,
BGR), floats (`float_data`) or an encoded file (`encoded`: the JPEG or PNG bytes), and
an integer label. Keys are `%08d_<file name>`, so key order is the list's order.
"""
from __future__ import annotations

import io
import os
import threading

import numpy as np

from netdef.proto import netdef_pb2 as pb

from ..errors import DataError

BACKENDS = ("lmdb", "leveldb")
COMMIT_EVERY = 1000  # records per transaction, as convert_imageset commits
LMDB_START_SIZE = 1 << 30  # the map grows by doubling; Caffe maps 1 TB up front


def backend_name(value: int) -> str:
    return "lmdb" if value == pb.DataParameter.LMDB else "leveldb"


class Database:
    """Read access by position: the keys are listed once (in key order), values are
    fetched by key, so any rank or epoch can start anywhere."""

    def __init__(self, path: str, backend: str):
        if not os.path.isdir(path):
            raise DataError(f"no {backend} database at {path}"
                            + (" (it is a file; Caffe's databases are folders)"
                               if os.path.exists(path) else ""))
        self.path, self.backend, self._lock = path, backend, threading.Lock()
        if backend == "lmdb":
            self._env = _lmdb_environment(path)
            with self._env.begin() as txn:
                self.keys = list(txn.cursor().iternext(keys=True, values=False))
        else:
            plyvel = _module("plyvel", "plyvel")
            try:
                self._db = plyvel.DB(path, create_if_missing=False)
            except plyvel.Error as exc:
                hint = (" (LevelDB lets one process open a database at a time: for --nproc, "
                        "write an LMDB with convert-imageset --backend lmdb)"
                        if "lock" in str(exc) else "")
                raise DataError(f"{path}: not a readable LevelDB database: {exc}{hint}") from None
            self.keys = list(self._db.iterator(include_value=False))
        if not self.keys:
            raise DataError(f"the {backend} database {path} holds no records")

    def __len__(self) -> int:
        return len(self.keys)

    def record(self, position: int) -> bytes:
        key = self.keys[position]
        with self._lock:
            if self.backend == "lmdb":
                with self._env.begin() as txn:
                    return txn.get(key)
            return self._db.get(key)


_LMDB_OPEN: dict[str, object] = {}  # LMDB opens an environment once per process: share it


def _lmdb_environment(path: str):
    lmdb = _module("lmdb", "lmdb")
    key = os.path.realpath(path)
    if key not in _LMDB_OPEN:
        try:
            _LMDB_OPEN[key] = lmdb.open(path, readonly=True, lock=False, readahead=False,
                                        max_readers=126)
        except lmdb.Error as exc:
            raise DataError(f"{path}: not a readable LMDB database: {exc}") from None
    return _LMDB_OPEN[key]


class Writer:
    """A new database, written in transactions of COMMIT_EVERY records."""

    def __init__(self, path: str, backend: str):
        if backend not in BACKENDS:
            raise DataError(f"unknown backend {backend!r}: use lmdb or leveldb")
        if os.path.exists(path):
            raise DataError(f"{path} exists; Caffe's tools write a new database")
        self.path, self.backend, self.pending = path, backend, []
        if backend == "lmdb":
            lmdb = _module("lmdb", "lmdb")
            self._lmdb = lmdb
            self._env = lmdb.open(path, map_size=LMDB_START_SIZE, subdir=True)
        else:
            plyvel = _module("plyvel", "plyvel")
            self._db = plyvel.DB(path, create_if_missing=True, error_if_exists=True,
                                 write_buffer_size=256 << 20)

    def put(self, key: bytes, value: bytes) -> None:
        self.pending.append((key, value))
        if len(self.pending) >= COMMIT_EVERY:
            self.commit()

    def commit(self) -> None:
        if self.backend == "leveldb":
            with self._db.write_batch() as batch:
                for key, value in self.pending:
                    batch.put(key, value)
        else:
            while True:
                try:
                    with self._env.begin(write=True) as txn:
                        for key, value in self.pending:
                            txn.put(key, value)
                    break
                except self._lmdb.MapFullError:  # the transaction was aborted: grow, retry
                    self._env.set_mapsize(self._env.info()["map_size"] * 2)
        self.pending = []

    def close(self) -> None:
        self.commit()
        (self._env if self.backend == "lmdb" else self._db).close()

    def discard(self) -> None:
        """Close and delete the database (it is new: this writer created it)."""
        import shutil

        (self._env if self.backend == "lmdb" else self._db).close()
        shutil.rmtree(self.path, ignore_errors=True)


def datum_image(raw: bytes, force_color: bool = False, force_gray: bool = False):
    """A record as (H x W x C image, label): uint8 BGR from pixels or an encoded file
    (decoded as it is stored unless forced to colour or grey, as Caffe's transformer
    does), float32 from float_data."""
    datum = parse_record(pb.Datum, raw)
    return datum_array(datum, force_color, force_gray), datum.label


def parse_record(message_type, raw: bytes):
    message = message_type()
    try:
        message.ParseFromString(raw)
    except Exception as exc:  # protobuf's DecodeError and kin: a damaged record
        raise DataError(f"a record is not a {message_type.__name__}: {exc}") from None
    return message


def datum_array(datum, force_color: bool = False, force_gray: bool = False) -> np.ndarray:
    """A Datum's image, H x W x C: uint8 BGR, or float32 from float_data."""
    if datum.encoded:
        return _decoded(datum.data, force_color, force_gray)
    shape = (datum.channels, datum.height, datum.width)
    if datum.data:
        values = np.frombuffer(datum.data, np.uint8)
    else:
        values = np.asarray(datum.float_data, np.float32)
    if min(shape) < 1 or values.size != shape[0] * shape[1] * shape[2]:
        raise DataError(f"a Datum of {'x'.join(map(str, shape))} holds {values.size} values")
    return values.reshape(shape).transpose(1, 2, 0)


def image_datum(image: np.ndarray, label: int) -> pb.Datum:
    """Caffe's CVMatToDatum: H x W x C uint8 (BGR) as C x H x W bytes."""
    height, width, channels = image.shape
    return pb.Datum(channels=channels, height=height, width=width, label=label,
                    data=np.ascontiguousarray(image.transpose(2, 0, 1)).tobytes())


def _decoded(data: bytes, force_color: bool, force_gray: bool) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            grey = force_gray or (not force_color and image.mode in ("L", "I;16", "1"))
            array = np.asarray(image.convert("L" if grey else "RGB"))
    except (OSError, ValueError) as exc:
        raise DataError(f"an encoded Datum does not decode: {exc}") from None
    return array[:, :, None] if grey else array[:, :, ::-1]


def _module(name: str, package: str):
    try:
        return __import__(name)
    except ImportError:
        raise DataError(f"reading and writing {'LMDB' if name == 'lmdb' else 'LevelDB'} "
                        f"databases needs the `{package}` package: pip install {package}") \
            from None


# ------------------------------------------------------------------ Caffe's two tools
def convert_imageset(root: str, listing: str, output: str, *, resize: tuple = (0, 0),
                     gray: bool = False, shuffle: bool = False, encoded: bool = False,
                     encode_type: str = "", backend: str = "lmdb", seed: int = 0,
                     progress=None) -> tuple[int, list[str]]:
    """Caffe's convert_imageset: the `file label` lines of LISTING, images read from
    ROOT + file, as Datum records keyed `%08d_file`. Returns (records written, files that
    could not be read: skipped with a warning, as Caffe skips them)."""
    from ..compiler.sidefiles import read_lines

    lines = [_entry(line, number, listing) for number, line in enumerate(read_lines(listing), 1)]
    if shuffle:
        lines = [lines[i] for i in np.random.default_rng(seed).permutation(len(lines))]
    writer, written, skipped = Writer(output, backend), 0, []
    try:
        for line_id, (name, label) in enumerate(lines):
            datum = _image_record(os.path.join(root, name) if root else name, label, resize,
                                  gray, encoded, encode_type)
            if datum is None:
                skipped.append(name)
            else:
                writer.put(f"{line_id:08d}_{name}".encode(), datum.SerializeToString())
                written += 1
            if progress is not None:
                progress(1)
    except BaseException:  # an error or Ctrl-C: no half-written database is left behind
        writer.discard()
        raise
    writer.close()
    return written, skipped


def compute_image_mean(path: str, output: str, backend: str = "lmdb") -> np.ndarray:
    """Caffe's compute_image_mean: the mean of every record's pixels, written as a
    BlobProto of 1 x C x H x W (Caffe's legacy num/channels/height/width fields)."""
    database = Database(path, backend)
    total = None
    for position in range(len(database)):
        image, _ = datum_image(database.record(position))
        values = image.transpose(2, 0, 1).astype(np.float64)
        if total is None:
            total = np.zeros_like(values)
        if values.shape != total.shape:
            raise DataError(f"{path}: record {database.keys[position].decode(errors='replace')!r} "
                            f"is {'x'.join(map(str, values.shape))}, the first "
                            f"{'x'.join(map(str, total.shape))}; the mean needs one size")
        total += values
    mean = (total / len(database)).astype(np.float32)
    channels, height, width = mean.shape
    blob = pb.BlobProto(num=1, channels=channels, height=height, width=width,
                        data=mean.ravel().tolist())
    with open(output, "wb") as handle:
        handle.write(blob.SerializeToString())
    return mean


def _entry(line: str, number: int, listing: str) -> tuple[str, int]:
    name, _, label = line.rpartition(" ")  # the file name may hold spaces, as in Caffe
    try:
        return name, int(label)
    except ValueError:
        raise DataError(f"{listing}:{number}: expected 'file label', got {line!r}") from None


def _image_record(path: str, label: int, resize: tuple, gray: bool, encoded: bool,
                  encode_type: str) -> pb.Datum | None:
    """Caffe's ReadImageToDatum: the file's own bytes when it is already in the wanted
    encoding, colour and size; else the decoded (resized) image, re-encoded if asked."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            picture = image.convert("L" if gray else "RGB")
    except (OSError, ValueError):
        return None
    height, width = resize
    if height and width:  # Caffe resizes only when both are given
        picture = picture.resize((width, height), Image.BILINEAR)
    if encoded:
        extension = os.path.splitext(path)[1].lstrip(".").lower()
        wanted = (encode_type or extension).lower()
        same = extension == wanted or (wanted, extension) == ("jpg", "jpeg")
        if same and not (height and width):
            with open(path, "rb") as handle:  # Caffe's matchExt: the file is stored as it is
                return pb.Datum(data=handle.read(), label=label, encoded=True)
        buffer = io.BytesIO()
        try:
            picture.save(buffer, "JPEG" if wanted in ("jpg", "jpeg") else wanted.upper())
        except (KeyError, OSError, ValueError):
            raise DataError(f"cannot encode images as {wanted!r}; use jpg or png") from None
        return pb.Datum(data=buffer.getvalue(), label=label, encoded=True)
    array = np.asarray(picture)
    array = array[:, :, None] if gray else array[:, :, ::-1]
    return image_datum(array, label)
