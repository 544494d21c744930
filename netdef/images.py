"""Images in and out of `netdef run`, the way Caffe-era pipelines feed them.

In: RGB file -> 1 x 3 x H x W float32 in BGR order, 0..255, minus a per-channel
mean (the FCN and VGG convention); for a net whose input has one channel, 1 x 1 x H x W grey. Out: a score blob becomes its per-pixel argmax
drawn with the PASCAL VOC palette; a 3-channel blob becomes a BGR picture (mean
added back); a 1-channel blob a grey picture stretched to 0..255.
"""
from __future__ import annotations

import os

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


def is_image(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def read_image(path: str, mean: tuple[float, ...] = (0.0, 0.0, 0.0),
               grey: bool = False) -> np.ndarray:
    """1 x 3 x H x W BGR minus the mean; `grey`: 1 x 1 x H x W luma (ITU-R 601, as OpenCV's
    grey imread that Caffe's tools use) minus the mean's first value."""
    from PIL import Image

    with Image.open(path) as picture:
        if grey:
            luma = np.asarray(picture.convert("L"), dtype=np.float32) - float(mean[0])
            return np.ascontiguousarray(luma[None, None])
        rgb = np.asarray(picture.convert("RGB"), dtype=np.float32)
    bgr = rgb[:, :, ::-1] - np.asarray(mean, np.float32)
    return np.ascontiguousarray(bgr.transpose(2, 0, 1)[None])


def read_segments(path: str) -> np.ndarray:
    """Segment ids from an indexed (palette) or greyscale image, H x W int64."""
    from PIL import Image

    with Image.open(path) as picture:
        if picture.mode not in ("P", "L", "I", "I;16"):
            raise ValueError(f"segments must be an indexed or grey image of ids, not "
                             f"{picture.mode}")
        return np.asarray(picture).astype(np.int64)


def as_rgb(blob: np.ndarray, mean: tuple[float, ...] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """The first image of a 1 x 3 x H x W BGR input blob as H x W x 3 RGB uint8."""
    bgr = blob[0].transpose(1, 2, 0) + np.asarray(mean, np.float32)
    return np.clip(bgr[:, :, ::-1], 0, 255).round().astype(np.uint8)


def voc_palette(count: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: label bits spread over the high bits of R, G and B."""
    palette = np.zeros((count, 3), np.uint8)
    for label in range(count):
        value, shift = label, 7
        while value:
            for channel in range(3):
                palette[label, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
            shift -= 1
    return palette


def write_image(path: str, blob: np.ndarray, mean: tuple[float, ...] = (0.0, 0.0, 0.0)) -> str:
    """Write the first item of an N x C x H x W blob; returns what was drawn."""
    from PIL import Image

    if blob.ndim != 4:
        raise ValueError(f"an image needs an N x C x H x W blob, this one is "
                         f"{'x'.join(map(str, blob.shape))}")
    first = blob[0]
    if first.shape[0] == 3:
        Image.fromarray(as_rgb(blob, mean)).save(path)
        return "BGR picture"
    if first.shape[0] == 1:
        grey = first[0] - first[0].min()
        grey = grey / grey.max() * 255 if grey.max() > 0 else grey
        Image.fromarray(grey.round().astype(np.uint8)).save(path)
        return "grey picture (min..max stretched)"
    labels = first.argmax(0).astype(np.uint8)
    picture = Image.fromarray(labels, mode="P")
    picture.putpalette(voc_palette().tobytes())
    picture.save(path)
    return f"argmax of {first.shape[0]} classes"
