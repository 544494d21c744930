"""What a detection net's `netdef run` writes: its boxes drawn on the input image with
class names and scores, and the detections as JSON.

A detection output holds rows (image, label, score, x1, y1, x2, y2) with corners
normalised to [0, 1] (SSD's DetectionOutput); label -1 marks Caffe's "no detection" row.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from .images import voc_palette


@dataclass
class Detection:
    image: int
    label: int
    name: str
    score: float
    box: list  # x1, y1, x2, y2 in input pixels
    box_normalized: list  # the same in [0, 1] image units, as the net gives them


def detection_blob(net, names) -> str | None:
    """The first of `names` that a detection layer (its rule's output_kind) produces."""
    producers = {blob.name: net.layers[blob.producer] for blob in net.blobs.values()
                 if blob.producer is not None}
    return next((name for name in names if name in producers
                 and getattr(producers[name].rule, "output_kind", None) == "detections"), None)


def read_labels(path: str) -> list[str]:
    """Class names, one per line; line i names label i (SSD's label 0 is the background)."""
    with open(path, encoding="utf-8") as lines:
        return [line.strip() for line in lines]


def detections(rows: np.ndarray, size: tuple, labels: list[str], threshold: float):
    """The rows scoring at least `threshold`, best first, in pixels of an image of `size`
    (height, width)."""
    height, width = size
    found = []
    for image, label, score, *corners in rows.reshape(-1, 7).tolist():
        if label < 0 or score < threshold:
            continue
        label = int(label)
        name = labels[label] if 0 <= label < len(labels) else f"class {label}"
        pixels = [corners[0] * width, corners[1] * height, corners[2] * width,
                  corners[3] * height]
        found.append(Detection(int(image), label, name, round(score, 6),
                               [round(v, 2) for v in pixels], [round(v, 6) for v in corners]))
    return sorted(found, key=lambda d: -d.score)


def write_json(path: str, found: list[Detection]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        json.dump({"detections": [asdict(d) for d in found]}, out, indent=2)
        out.write("\n")


def draw(image: np.ndarray, found: list[Detection]):
    """The image (H x W x 3 RGB) with each detection of image 0 as a box in its class's
    VOC colour, labelled with its name and score."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(image)
    pen = ImageDraw.Draw(picture)
    palette = voc_palette()
    width = max(2, round(max(picture.size) / 200))
    for item in (d for d in found if d.image == 0):
        colour = tuple(int(c) for c in palette[item.label % 255 + 1])
        x1, y1, x2, y2 = item.box
        pen.rectangle([x1, y1, x2, y2], outline=colour, width=width)
        text = f"{item.name} {item.score:.2f}"
        left, top, right, bottom = pen.textbbox((x1, y1), text)
        lift = bottom - top + 2 * width
        pen.rectangle([x1, y1 - lift, x1 + right - left + 2 * width, y1], fill=colour)
        pen.text((x1 + width, y1 - lift + width), text, fill=(0, 0, 0))
    return picture
