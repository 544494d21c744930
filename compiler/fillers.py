"""Caffe's weight fillers, for parameters a caffemodel does not provide (seeded, numpy).

fan_in = count / shape[0] and fan_out = count / shape[1], as Caffe computes them
on the blob shape (so a Deconvolution's C_in x C_out/g x k x k blob uses its own).
"""
from __future__ import annotations

import math

import numpy as np

from netdef.proto import netdef_pb2 as pb

NORM = pb.FillerParameter.VarianceNorm


def fill(shape: tuple, filler: pb.FillerParameter | None, rng: np.random.Generator,
         default: float = 0.0) -> np.ndarray:
    """Values for one blob; without a filler, Caffe's default (constant `default`)."""
    shape = tuple(shape)
    if filler is None:
        return np.full(shape, default, np.float32)
    kind = filler.type.lower()
    if kind == "constant":
        return np.full(shape, filler.value, np.float32)
    if kind == "uniform":
        return rng.uniform(filler.min, filler.max, shape).astype(np.float32)
    if kind == "gaussian":
        return (filler.mean + filler.std * rng.standard_normal(shape)).astype(np.float32)
    if kind == "xavier":
        scale = math.sqrt(3.0 / _fan(shape, filler.variance_norm))
        return rng.uniform(-scale, scale, shape).astype(np.float32)
    if kind == "msra":
        std = math.sqrt(2.0 / _fan(shape, filler.variance_norm))
        return (std * rng.standard_normal(shape)).astype(np.float32)
    if kind in ("bilinear", "bilinear_upsampling"):  # ParseNet's fork names it the latter
        return bilinear(shape)
    if kind == "positive_unitball":
        values = rng.uniform(0, 1, shape).astype(np.float32)
        rows = values.reshape(shape[0], -1) if shape else values.reshape(1, -1)
        return (rows / rows.sum(axis=1, keepdims=True)).reshape(shape)
    raise ValueError(f"unknown filler type {filler.type!r}")


def _fan(shape: tuple, norm: int) -> float:
    count = math.prod(shape)
    fan_in = count / shape[0] if shape else 1
    fan_out = count / shape[1] if len(shape) > 1 else 1
    if norm == NORM.Value("FAN_OUT"):
        return fan_out
    if norm == NORM.Value("AVERAGE"):
        return (fan_in + fan_out) / 2
    return fan_in


def bilinear(shape: tuple) -> np.ndarray:
    """BVLC's BilinearFiller: the 2-D tent in every (in, out) pair (right with group = C)."""
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ValueError(f"the bilinear filler needs square kernels, got shape {shape}")
    kernel = shape[-1]
    factor = math.ceil(kernel / 2)
    centre = (kernel - 1) / (2 * factor)
    tent = 1 - np.abs(np.arange(kernel) / factor - centre)
    return np.broadcast_to(np.outer(tent, tent), shape).astype(np.float32)
