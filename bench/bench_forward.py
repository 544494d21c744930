"""FCN-8s 500x500 forward on CPU: netdef.load's module vs OpenCV 4.12's Caffe importer vs the
same net written by hand in eager PyTorch; and netdef's compile time (prototxt to module).

Run: python bench/bench_forward.py [--repeat N]   (prints a markdown table)
"""
from __future__ import annotations

import argparse
import io
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import netdef
from netdef.compiler.analysis import check_net
from netdef.compiler.weights import write_caffemodel
from timing import timed  # bench/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
FCN8S = ROOT.parent / "shared/corpus/shelhamer+fcn.berkeleyvision.org/voc-fcn8s/deploy.prototxt"


def random_caffemodel(net) -> tuple[bytes, dict]:
    """Seeded weights for every Convolution/Deconvolution, also returned by layer name."""
    from netdef.compiler.bind import build_module

    rng = np.random.default_rng(0)
    weights, layers = {}, []
    module = build_module(net, device="meta")  # the blob shapes, from the rules themselves
    for index, target, names in module.caffe_parameters:
        layer = net.layers[index]
        if layer.type not in ("Convolution", "Deconvolution"):
            continue
        weight, *bias = (tuple(getattr(module.get_submodule(target), n).shape) for n in names)
        blobs = [(rng.standard_normal(weight) / np.sqrt(np.prod(weight[1:]))).astype(np.float32)]
        blobs += [(0.1 * rng.standard_normal(shape)).astype(np.float32) for shape in bias]
        weights[layer.name] = [torch.from_numpy(b) for b in blobs]
        layers.append((layer.name, layer.type, blobs))
    out = io.BytesIO()
    write_caffemodel(out, layers)
    return out.getvalue(), weights


class HandWrittenFCN8s(torch.nn.Module):
    """FCN-8s in plain eager PyTorch, the way one would write it without netdef."""

    def __init__(self, w):
        super().__init__()
        self.w = w

    def conv(self, x, name, pad=1, relu=True):
        weight, bias = self.w[name]
        x = F.conv2d(x, weight, bias, padding=pad)
        return F.relu(x) if relu else x

    def forward(self, data):
        x = data
        for stage, count in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)):
            for i in range(1, count + 1):
                x = self.conv(x, f"conv{stage}_{i}", pad=100 if (stage, i) == (1, 1) else 1)
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            if stage == 3:
                pool3 = x
            if stage == 4:
                pool4 = x
        x = self.conv(self.conv(x, "fc6", pad=0), "fc7", pad=0)
        score = self.conv(x, "score_fr", pad=0, relu=False)
        up2 = F.conv_transpose2d(score, self.w["upscore2"][0], stride=2)
        p4 = self.conv(pool4, "score_pool4", pad=0, relu=False)[:, :, 5:5 + up2.shape[2], 5:5 + up2.shape[3]]
        up4 = F.conv_transpose2d(up2 + p4, self.w["upscore_pool4"][0], stride=2)
        p3 = self.conv(pool3, "score_pool3", pad=0, relu=False)[:, :, 9:9 + up4.shape[2], 9:9 + up4.shape[3]]
        up8 = F.conv_transpose2d(up4 + p3, self.w["upscore8"][0], stride=8)
        return up8[:, :, 31:31 + data.shape[2], 31:31 + data.shape[3]]


def summary(runs):
    times = [run[0] for run in runs]
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    import cv2

    net, _ = check_net(FCN8S)
    model_bytes, weights = random_caffemodel(net)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "fcn8s.caffemodel"
        model.write_bytes(model_bytes)
        x = np.random.default_rng(1).standard_normal((1, 3, 500, 500)).astype(np.float32)
        ours = netdef.load(FCN8S, model)
        hand = HandWrittenFCN8s(weights).eval()
        tensor = torch.from_numpy(x)
        with torch.no_grad():
            a, b = ours(data=tensor)["score"], hand(tensor)
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * b.abs().max()), "outputs differ"
        cv_net = cv2.dnn.readNetFromCaffe(str(FCN8S), str(model))

        def opencv():
            cv_net.setInput(x, "data")
            return cv_net.forward("score")

        start = time.perf_counter()
        fast = netdef.fast(ours)
        fast_out = fast(data=tensor)["score"]
        fast_compile_s = time.perf_counter() - start
        assert torch.allclose(fast_out, b, rtol=1e-4, atol=1e-4 * b.abs().max()), "fast differs"
        # interleaved, so a noisy neighbour hits every contender alike
        netdef_ms, hand_ms, fast_ms, cv_ms = [], [], [], []
        with torch.no_grad():
            for _ in range(args.repeat):
                netdef_ms.append(timed(lambda: ours(data=tensor), 1, warm=False))
                hand_ms.append(timed(lambda: hand(tensor), 1, warm=False))
                fast_ms.append(timed(lambda: fast(data=tensor), 1, warm=False))
                cv_ms.append(timed(opencv, 1, warm=False))
        netdef_ms, hand_ms, fast_ms, cv_ms = (summary(t) for t in (netdef_ms, hand_ms, fast_ms,
                                                                   cv_ms))
        compile_ms = timed(lambda: netdef.load(FCN8S, device="meta"), 10)
        print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch "
              f"{torch.__version__}, OpenCV {cv2.__version__}, Python {sys.version.split()[0]}, "
              f"{time.strftime('%Y-%m-%d')}")
        print("| what | netdef | peer | ratio (netdef / peer) |")
        print("|---|---|---|---|")
        print(f"| FCN-8s 500x500 forward, fp32 CPU, vs OpenCV 4.12 | {netdef_ms[0]:.0f} ms "
              f"(median {netdef_ms[1]:.0f}) | {cv_ms[0]:.0f} ms (median {cv_ms[1]:.0f}) | "
              f"{netdef_ms[0] / cv_ms[0]:.2f}x |")
        print(f"| same, vs hand-written eager PyTorch | {netdef_ms[0]:.0f} ms | {hand_ms[0]:.0f} ms "
              f"(median {hand_ms[1]:.0f}) | {netdef_ms[0] / hand_ms[0]:.2f}x |")
        print(f"| netdef.fast (torch.compile, frozen weights) vs OpenCV 4.12 | {fast_ms[0]:.0f} ms "
              f"(median {fast_ms[1]:.0f}; first call compiles: {fast_compile_s:.0f} s) | "
              f"{cv_ms[0]:.0f} ms | {fast_ms[0] / cv_ms[0]:.2f}x |")
        print(f"| compile FCN-8s (prototxt -> GraphModule on meta, no weights) | "
              f"{compile_ms[0]:.0f} ms (median {compile_ms[1]:.0f}) | goal 100 ms | "
              f"{compile_ms[0] / 100:.2f}x of goal |")


if __name__ == "__main__":
    main()
