"""SSD's `AnnotatedData` layer: AnnotatedDatum records (an image and its boxes, grouped by
class) through the fork's augmentation, as its data layer and transformer apply it:

1. photometric distortion (`distort_param`: brightness, contrast, saturation, hue, in one of
   the fork's two orders, then a random channel order);
2. expansion (`expand_param`: the image placed at random on a canvas up to
   `max_expand_ratio` times larger, filled with the mean);
3. a crop chosen by the `batch_sampler`s (random scale and aspect ratio, kept when its
   Jaccard overlap or coverage with some box meets the constraint; one of all kept at
   random);
4. the transformer: `resize_param` (WARP, with a random one of the listed interpolations),
   `crop_size`, `mirror`, the mean and `scale`.

Boxes follow every step (projected onto each crop, clipped to the image, kept by the
`emit_constraint`, flipped with the mirror). The label top is 1 x 1 x B x 8 rows (item,
class, instance, xmin, ymin, xmax, ymax, difficult) for the batch's B boxes, or one row of
-1 when there are none: the layout MultiBoxLoss reads.

Images are resized with Pillow, not OpenCV: the interpolations are the same kinds, but
their pixels can differ slightly (Pillow's filters also smooth when shrinking). A crop of an
encoded image stays decoded (the fork re-encodes it as JPEG).
"""
from __future__ import annotations

import numpy as np

from netdef.proto import netdef_pb2 as pb

from ..errors import DataError
from .data import ItemSource, SourceContext, Transform, data_error
from .databases import Database, backend_name, datum_array, parse_record

UNIT = np.array([0.0, 0.0, 1.0, 1.0])
# Limits on what a file's numbers may make the reader do per item: SSD uses a ratio of 4,
# 50 trials and 300 x 300; far beyond these an "augmentation" is a hang or a huge allocation.
MAX_EXPAND_RATIO = 64
MAX_TRIALS = 10_000
MAX_RESIZED_PIXELS = 1 << 26
Resize = pb.ResizeParameter
RESAMPLING = {Resize.LINEAR: "BILINEAR", Resize.AREA: "BOX", Resize.NEAREST: "NEAREST",
              Resize.CUBIC: "BICUBIC", Resize.LANCZOS4: "LANCZOS"}


class AnnotatedRecords(ItemSource):
    def __init__(self, layer, ctx: SourceContext):
        param, transform = layer.data_param, layer.transform_param
        try:
            self.database = Database(ctx.resolve(param.source), backend_name(param.backend))
        except DataError as exc:
            raise data_error(f"data_param.source: {exc}", layer=layer) from None
        resize = transform.resize_param
        if transform.HasField("resize_param") and resize.resize_mode != Resize.WARP:
            raise data_error("netdef resizes as WARP only (the mode SSD's files use)", layer=layer)
        self.resize = (resize.height, resize.width) if transform.HasField("resize_param") else None
        self.interpolations = list(resize.interp_mode) or [Resize.LINEAR]
        self.distortion = transform.distort_param if transform.HasField("distort_param") else None
        self.expansion = transform.expand_param if transform.HasField("expand_param") else None
        self.emit = transform.emit_constraint if transform.HasField("emit_constraint") else None
        self.samplers = list(layer.annotated_data_param.batch_sampler)
        for problem in _out_of_bounds(self.expansion, self.samplers, self.resize):
            raise data_error(problem, layer=layer)
        self.transform = Transform.from_param(transform, ctx)
        self.fill = np.asarray(transform.mean_value, np.float64)
        self.force = (transform.force_color, transform.force_gray)
        self.batch_size, self.tops = param.batch_size, len(layer.top)
        first = parse_record(pb.AnnotatedDatum, self.database.record(0))
        # as the fork decides: boxes when the records (or the layer) name an annotation type,
        # else each datum's own label, one per item, as a Data layer gives it
        self.boxes = first.HasField("type") or layer.annotated_data_param.HasField("anno_type")

    def __len__(self):
        return len(self.database)

    def batch(self, index: int) -> list[np.ndarray]:
        items = [self._item_at(index * self.batch_size + j) for j in range(self.batch_size)]
        images = np.stack([image for image, _ in items])
        if not self.boxes:
            return [images, np.asarray([label for _, label in items], np.float32)][:self.tops]
        rows = [[item, *row] for item, (_, boxes) in enumerate(items) for row in boxes]
        label = np.asarray(rows or [[-1] * 8], np.float32).reshape(1, 1, -1, 8)
        return [images, label][:self.tops]

    def item(self, index, rng):
        try:
            return self._augmented(index, rng)
        except DataError as exc:  # located: the database and the record's key
            key = self.database.keys[index].decode(errors="replace")
            raise data_error(f"{self.database.path}: record {key!r}: {exc}") from None

    def _augmented(self, index, rng):
        record = parse_record(pb.AnnotatedDatum, self.database.record(index))
        image = datum_array(record.datum, *self.force)
        boxes = [[group.group_label, note.instance_id, note.bbox.xmin, note.bbox.ymin,
                  note.bbox.xmax, note.bbox.ymax, float(note.bbox.difficult)]
                 for group in record.annotation_group for note in group.annotation]
        boxes = np.asarray(boxes, np.float64).reshape(-1, 7)
        if self.distortion is not None:
            image = distort(image, self.distortion, rng)
        if self.expansion is not None:
            image, boxes = self.expand(image, boxes, rng)
        if self.samplers:
            image, boxes = self.sample(image, boxes, rng)
        if self.resize is not None:
            interpolation = self.interpolations[rng.integers(len(self.interpolations))]
            image = resized(image, self.resize, interpolation)
        image, boxes = self.finish(image, boxes, rng)
        return image, boxes if self.boxes else record.datum.label

    def expand(self, image, boxes, rng):
        """The fork's ExpandImage: with probability `prob`, the image at a random place on a
        canvas 1..max_expand_ratio times its size, filled with the mean values."""
        ratio_limit = self.expansion.max_expand_ratio
        if rng.uniform() > self.expansion.prob or abs(ratio_limit - 1) < 1e-2:
            return image, boxes
        ratio = rng.uniform(1, ratio_limit)
        height, width, channels = image.shape
        big_h, big_w = int(height * ratio), int(width * ratio)
        top = np.floor(rng.uniform(0, big_h - height))
        left = np.floor(rng.uniform(0, big_w - width))
        fill = self.fill if len(self.fill) == channels else np.zeros(channels)
        canvas = np.empty((big_h, big_w, channels), image.dtype)
        canvas[...] = fill.astype(image.dtype)
        canvas[int(top):int(top) + height, int(left):int(left) + width] = image
        frame = np.array([-left / width, -top / height,
                          (big_w - left) / width, (big_h - top) / height])
        return canvas, annotate(boxes, frame, self.emit, False)

    def sample(self, image, boxes, rng):
        """A crop from the batch samplers, one of the boxes they kept at random."""
        kept = [box for sampler in self.samplers if sampler.use_original_image
                for box in samples(sampler, boxes[:, 2:6], rng)]
        if not kept:
            return image, boxes
        frame = np.clip(kept[rng.integers(len(kept))], 0, 1)
        height, width = image.shape[:2]
        left, top = int(frame[0] * width), int(frame[1] * height)
        crop_w = int(frame[2] * width - frame[0] * width)
        crop_h = int(frame[3] * height - frame[1] * height)
        if crop_w < 1 or crop_h < 1:  # narrower than a pixel of this image: keep it whole
            return image, boxes
        return image[top:top + crop_h, left:left + crop_w], annotate(boxes, frame, self.emit, False)

    def finish(self, image, boxes, rng):
        """Caffe's transformer (crop, mirror, mean, scale) and the boxes through its crop."""
        height, width = image.shape[:2]
        size = self.transform.crop_size
        flip = self.transform.mirror and bool(rng.integers(2))
        top = left = 0
        if size > min(height, width):
            raise DataError(f"crop_size {size} exceeds the image ({height} x {width})")
        if size:
            if self.transform.train:
                top = int(rng.integers(height - size + 1))
                left = int(rng.integers(width - size + 1))
            else:
                top, left = (height - size) // 2, (width - size) // 2
            image = image[top:top + size, left:left + size]
        frame = np.array([left / width, top / height, (left + image.shape[1]) / width,
                          (top + image.shape[0]) / height])
        plain = Transform(self.transform.scale, False, 0, None if size else self.transform.mean,
                          self.transform.mean_values, self.transform.train)
        data = plain(image, rng)
        if size and self.transform.mean is not None:
            mean = self.transform.mean[:, top:top + size, left:left + size]
            data = data - mean * self.transform.scale
        data = np.ascontiguousarray(data[:, :, ::-1] if flip else data)
        return data, annotate(boxes, frame, self.emit, flip)


def _out_of_bounds(expansion, samplers, resize):
    if expansion is not None and expansion.max_expand_ratio > MAX_EXPAND_RATIO:
        yield (f"expand_param.max_expand_ratio {expansion.max_expand_ratio:g} is over "
               f"{MAX_EXPAND_RATIO}: a canvas that large is not an augmentation")
    for sampler in samplers:
        if sampler.max_trials > MAX_TRIALS:
            yield f"batch_sampler.max_trials {sampler.max_trials} is over {MAX_TRIALS}"
    if resize is not None and resize[0] * resize[1] > MAX_RESIZED_PIXELS:
        yield f"resize_param {resize[0]} x {resize[1]} is over {MAX_RESIZED_PIXELS} pixels"


# ------------------------------------------------------------------ boxes
def box_size(boxes):
    size = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return np.where((boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1]), 0.0, size)


def meeting(a, b):
    """Area where boxes a and b meet (0 when they do not)."""
    width = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    height = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    return np.where((width > 0) & (height > 0), width * height, 0.0)


def jaccard(a, b):
    meet = meeting(a, b)
    return np.where(meet > 0, meet / np.maximum(box_size(a) + box_size(b) - meet, 1e-12), 0.0)


def annotate(rows, frame, emit, flip: bool):
    """The fork's TransformAnnotation: boxes (rows of class, instance, corners, difficult)
    kept by the emit constraint, projected onto `frame`, clipped, dropped when empty,
    mirrored with the image."""
    boxes = rows[:, 2:6]
    keep = np.ones(len(rows), bool)
    if emit is not None:
        if emit.emit_type == pb.EmitConstraint.CENTER:
            cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
            keep &= (cx >= frame[0]) & (cx <= frame[2]) & (cy >= frame[1]) & (cy <= frame[3])
        else:  # MIN_OVERLAP: the part of the box inside the frame
            keep &= meeting(boxes, frame) / np.maximum(box_size(boxes), 1e-12) > emit.emit_overlap
    keep &= ~((boxes[:, 0] >= frame[2]) | (boxes[:, 2] <= frame[0]) |
              (boxes[:, 1] >= frame[3]) | (boxes[:, 3] <= frame[1]))
    extent = np.array([frame[2] - frame[0], frame[3] - frame[1]] * 2)
    projected = np.clip((boxes - np.array([frame[0], frame[1]] * 2)) / extent, 0, 1)
    keep &= box_size(projected) > 0
    if flip:
        projected = np.stack([1 - projected[:, 2], projected[:, 1], 1 - projected[:, 0],
                              projected[:, 3]], 1)
    out = rows.copy()
    out[:, 2:6] = projected
    return out[keep]


def samples(batch_sampler, objects, rng) -> list[np.ndarray]:
    """The fork's GenerateSamples: up to max_sample boxes in max_trials draws that meet
    the constraint (any box does, when the constraint sets nothing)."""
    found = []
    for _ in range(batch_sampler.max_trials):
        if batch_sampler.HasField("max_sample") and len(found) >= batch_sampler.max_sample:
            break
        box = sample_box(batch_sampler.sampler, rng)
        if satisfies(box, objects, batch_sampler.sample_constraint):
            found.append(box)
    return found


def sample_box(sampler, rng) -> np.ndarray:
    scale = rng.uniform(sampler.min_scale, sampler.max_scale)
    aspect = rng.uniform(sampler.min_aspect_ratio, sampler.max_aspect_ratio)
    aspect = min(max(aspect, scale ** 2), 1 / scale ** 2)
    width, height = scale * np.sqrt(aspect), scale / np.sqrt(aspect)
    left, top = rng.uniform(0, max(0.0, 1 - width)), rng.uniform(0, max(0.0, 1 - height))
    return np.array([left, top, left + width, top + height])


def satisfies(box, objects, constraint) -> bool:
    tests = [(name, measure) for name, measure in (
        ("jaccard_overlap", lambda o: jaccard(box, o)),
        ("sample_coverage", lambda o: meeting(box, o) / max(float(box_size(box)), 1e-12)),
        ("object_coverage", lambda o: meeting(o, box) / max(float(box_size(o)), 1e-12)))
        if constraint.HasField(f"min_{name}") or constraint.HasField(f"max_{name}")]
    if not tests:
        return True
    for target in objects:
        for name, measure in tests:
            value = float(measure(target))
            low, high = f"min_{name}", f"max_{name}"
            if (constraint.HasField(low) and value < getattr(constraint, low)) or \
                    (constraint.HasField(high) and value > getattr(constraint, high)):
                continue
            return True
    return False


# ------------------------------------------------------------------ pixels
def resized(image, size, interpolation):
    from PIL import Image

    height, width = size
    grey = image.shape[2] == 1
    picture = Image.fromarray(np.ascontiguousarray(image[:, :, 0] if grey else image))
    array = np.asarray(picture.resize((width, height), getattr(Image, RESAMPLING[interpolation])))
    return array[:, :, None] if grey else array


def distort(image, param, rng):
    """The fork's ApplyDistort on a uint8 BGR image: brightness, then contrast before or
    after saturation and hue (either order, evenly), then a random channel order."""
    steps = [_brightness, _contrast, _saturation, _hue] if rng.uniform() > 0.5 \
        else [_brightness, _saturation, _hue, _contrast]
    for step in steps:
        image = step(image, param, rng)
    if rng.uniform() < param.random_order_prob:
        image = image[:, :, rng.permutation(image.shape[2])]
    return image


def _brightness(image, param, rng):
    if rng.uniform() >= param.brightness_prob:
        return image
    return _saturate(image + rng.uniform(-param.brightness_delta, param.brightness_delta))


def _contrast(image, param, rng):
    if rng.uniform() >= param.contrast_prob:
        return image
    return _saturate(image * rng.uniform(param.contrast_lower, param.contrast_upper))


def _saturation(image, param, rng):
    if rng.uniform() >= param.saturation_prob or image.shape[2] != 3:
        return image
    hsv = bgr_to_hsv(image)
    factor = rng.uniform(param.saturation_lower, param.saturation_upper)
    hsv[..., 1] = _saturate(hsv[..., 1] * factor)
    return hsv_to_bgr(hsv)


def _hue(image, param, rng):
    if rng.uniform() >= param.hue_prob or image.shape[2] != 3:
        return image
    hsv = bgr_to_hsv(image)
    hsv[..., 0] = _saturate(hsv[..., 0] + rng.uniform(-param.hue_delta, param.hue_delta))
    return hsv_to_bgr(hsv)


def _saturate(values):
    """OpenCV's saturate_cast to uint8: rounded, clipped to 0..255."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def bgr_to_hsv(image) -> np.ndarray:
    """OpenCV's 8-bit BGR -> HSV: H in 0..179 (degrees / 2), S and V in 0..255."""
    b, g, r = (image[..., k].astype(np.int64) for k in range(3))
    v = np.maximum(np.maximum(b, g), r)
    diff = v - np.minimum(np.minimum(b, g), r)
    s = np.where(v > 0, np.rint(diff * 255 / np.maximum(v, 1)), 0)
    raw = np.where(v == r, g - b, np.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = np.where(diff > 0, np.rint(raw * 30 / np.maximum(diff, 1)), 0)
    h = np.where(h < 0, h + 180, h)
    return np.stack([h, s, v], -1).astype(np.uint8)


def hsv_to_bgr(hsv) -> np.ndarray:
    """OpenCV's 8-bit HSV -> BGR (hue wraps every 180)."""
    h = (hsv[..., 0].astype(np.float64) * 6 / 180) % 6
    s, v = hsv[..., 1] / 255.0, hsv[..., 2].astype(np.float64)
    sector = np.floor(h).astype(np.int64) % 6
    f = h - np.floor(h)
    table = np.stack([v, v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))], -1)
    pick = np.array([[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]])[sector]
    return _saturate(np.take_along_axis(table, pick, -1))
