"""The region net learns end to end (issue 6): a synthetic image with a few segments, 50 SGD
steps with momentum 0.99 and one image per batch, through the net models/region_net.py
writes. On CPU the backbone is narrowed 8x (same layers, pathways, transposes and losses);
tests/test_cuda.py trains the full-width net the same way."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

import netdef

from .conftest import ROOT

PATHWAYS = ("conv2_2", "conv3_3", "conv4_3", "conv5_3", "fc6")


def region_net_text(shape, narrowing):
    spec = importlib.util.spec_from_file_location("region_models",
                                                  ROOT / "models" / "region_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.region_net(shape, narrowing=narrowing)


def synthetic_scene(height, width):
    """Three coloured rectangles (segments 1..3) on noise; overlapping, so one cuts another."""
    rng = np.random.default_rng(0)
    segments = np.zeros((height, width), np.int64)
    image = rng.normal(0, 10, (3, height, width)).astype(np.float32)
    boxes = [(6, 8, 24, 30), (30, 40, 28, 40), (10, 60, 20, 24)]
    colours = [(60, -40, 20), (-50, 50, 0), (0, -30, 70)]
    for label, ((y, x, h, w), colour) in enumerate(zip(boxes, colours), start=1):
        segments[y:y + h, x:x + w] = label
        image[:, y:y + h, x:x + w] += np.asarray(colour, np.float32)[:, None, None]
    return torch.from_numpy(image)[None], torch.from_numpy(segments)[None, None].float()


def train(module, data, segments, steps=50, lr=1e-3):
    """Per step: every pathway's loss; after the first backward, each pathway's first
    convolution's gradient norm."""
    optimiser = torch.optim.SGD(module.parameters(), lr=lr, momentum=0.99)
    history, first_gradients = [], None
    for _ in range(steps):
        losses = module(data=data, segments=segments)
        optimiser.zero_grad()
        sum(losses.values()).backward()
        if first_gradients is None:
            first_gradients = {p: module.get_submodule(f"regions_{p}").weight.grad.norm().item()
                               for p in PATHWAYS}
            first_gradients["conv1_1"] = module.get_submodule("conv1_1").weight.grad.norm().item()
        optimiser.step()
        history.append({name: value.item() for name, value in losses.items()})
    return history, first_gradients


def assert_learns(history, gradients):
    assert set(history[0]) == {f"loss_{p}" for p in PATHWAYS}
    for name in history[0]:
        start, end = history[0][name], np.mean([h[name] for h in history[-5:]])
        assert np.isfinite(end) and end < 0.9 * start, (name, start, end)
    for name, norm in gradients.items():
        assert norm > 0, name


@pytest.mark.slow
def test_fifty_sgd_steps_lower_every_pathways_loss():
    torch.manual_seed(0)
    data, segments = synthetic_scene(64, 96)
    module = netdef.load(region_net_text((1, 3, 64, 96), narrowing=8), phase="TRAIN")
    assert_learns(*train(module, data, segments))
