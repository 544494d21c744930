"""The zoo, quiet and busy: netdef.load's faithful module and optimize=True against OpenCV 4.12's
Caffe importer on nine nets (the real nsfw ResNet-50 when its test has cached it, ResNet-50,
GoogLeNet, MobileNet v1, SqueezeNet 1.1, AlexNet, VGG-16, FCN-8s at 500 x 500, DenseNet-121),
2 threads each, interleaved in one process (one forward of each per round). Weights are seeded
and written by netdef's caffemodel writer. "Busy" runs the same rounds while two processes spin
on the same cores (started and stopped by the bench).

Run: python bench/bench_zoo.py [--rounds N] [--busy-rounds N] [--nets NAME,...]
"""
from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import netdef  # first: netdef sets its OpenMP default before torch loads  # isort: skip
import numpy as np
import torch

from netdef.compiler.analysis import check_net

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_optimize import CORPUS, NSFW, seeded_weights  # noqa: E402
from nets import (densenet_net, inception_net, mobilenet_net, resnet_net,  # noqa: E402
                  squeezenet_net, vgg16_net)

KINDS = ("faithful", "optimized", "opencv")


def zoo(folder: Path, wanted) -> dict:
    """name -> (prototxt, weights, input shape), seeded weights written into `folder`."""
    found = {}
    for name, source in zoo_nets(wanted).items():
        if isinstance(source, tuple):  # a real net with its own weights
            found[name] = source
            continue
        path, weights = folder / f"{name}.prototxt", folder / f"{name}.caffemodel"
        path.write_text(source)
        seeded_weights(path, weights)
        found[name] = (path, weights)
    return {name: (*files, _input_shape(files[0])) for name, files in found.items()}


def zoo_nets(wanted=()) -> dict:
    """name -> prototxt text, or (prototxt, caffemodel) for nsfw's real net when cached."""
    nets = {}
    if (NSFW / "resnet_50_1by2_nsfw.caffemodel").exists():
        nets["nsfw"] = (NSFW / "deploy.prototxt", NSFW / "resnet_50_1by2_nsfw.caffemodel")
    nets.update({
        "ResNet-50": resnet_net((3, 4, 6, 3)),
        "GoogLeNet": inception_net().replace("dim: 10 dim: 3", "dim: 1 dim: 3"),
        "MobileNet": mobilenet_net(), "SqueezeNet": squeezenet_net(),
        "AlexNet": (CORPUS / "BVLC+caffe/models/bvlc_alexnet/deploy.prototxt")
        .read_text().replace("dim: 10", "dim: 1"),
        "VGG-16": vgg16_net(),
        "FCN-8s": (CORPUS / "shelhamer+fcn.berkeleyvision.org/voc-fcn8s/deploy.prototxt")
        .read_text(),
        "DenseNet-121": densenet_net()})
    return {name: net for name, net in nets.items() if not wanted or name in wanted}


def _input_shape(prototxt) -> tuple:
    net, _ = check_net(prototxt)
    return next(net.blobs[b].shape for b in net.input_blobs)


def spin() -> None:
    while True:
        pass


@contextlib.contextmanager
def busy():
    """Two processes spinning on the same cores for the block."""
    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(2)]
    for process in spinners:
        process.start()
    time.sleep(0.5)
    try:
        yield
    finally:
        for process in spinners:
            process.terminate()


def busy_medians(runs: dict, rounds: int, gap: float = 0.0) -> dict:
    """medians() while two processes spin on the same cores (started and stopped here)."""
    with busy():
        return medians(runs, rounds, gap)


def medians(runs: dict, rounds: int, gap: float = 0.0) -> dict:
    """Each kind's median forward in ms over `rounds` rounds of one forward each, in the orders
    of a Williams design: over its rows every kind runs first equally often and right after
    every other kind once. A forward just after OpenCV's shares the cores with OpenCV's threads
    still awake: the chooser's quiet medians were up to 26% high when it always ran there
    (docs/benchmarks.md, "Rounds in turning order"), and in the turning order that replaced it
    each kind still followed the same neighbour, which made whichever rule came second in a
    comparison of thread rules look 5-10% faster ("the chooser's rule"). `gap` seconds of
    sleep before each forward let the other side's threads stop spinning first."""
    times = {kind: [] for kind in runs}
    for fn in runs.values():
        fn()  # warm-up
    for number in range(rounds):
        for kind in round_order(list(runs), number):
            time.sleep(gap)
            start = time.perf_counter()
            runs[kind]()
            times[kind].append((time.perf_counter() - start) * 1000)
    return {kind: statistics.median(values) for kind, values in times.items()}


def round_order(kinds: list, number: int) -> list:
    """The kinds in the order of round `number` (from 0), a row of williams_orders."""
    orders = williams_orders(len(kinds))
    return [kinds[index] for index in orders[number % len(orders)]]


def williams_orders(count: int) -> list:
    """Orders of range(count), the rows of a Williams Latin square (count rows, twice as many
    when count is odd): over all rows, each index runs first equally often and right after
    each other index equally often."""
    first = [0]
    for step in range(1, count):
        first.append((first[-1] + (step if step % 2 else count - step)) % count)
    orders = [[(index + shift) % count for index in first] for shift in range(count)]
    return orders + [order[::-1] for order in orders] if count % 2 else orders


def runners(prototxt, weights, shape, **modules) -> dict:
    """kind -> a no-argument forward on one seeded input: OpenCV's net, and netdef's `modules`
    (by default the faithful module and optimize=True)."""
    import cv2

    if not modules:
        modules = {"faithful": netdef.load(prototxt, weights),
                   "optimized": netdef.load(prototxt, weights, optimize=True)}
    peer = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    tensor = torch.from_numpy(x)

    def opencv():
        peer.setInput(x, "data")
        peer.forward()

    def ours(module):
        def run():
            with torch.no_grad():
                module(data=tensor)
        return run
    return {**{kind: ours(module) for kind, module in modules.items()}, "opencv": opencv}


def cpu_kind() -> str:
    """The CPU's model and whether it has AVX-512: the quiet ratios depend on it (oneDNN
    gains more from it than OpenCV does)."""
    try:
        with open("/proc/cpuinfo") as handle:
            info = handle.read()
    except OSError:
        return "CPU unknown"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("model name")), "CPU unknown")
    return f"{model}, {'with' if 'avx512f' in info else 'without'} AVX-512"


def geomean(values) -> float:
    values = list(values)
    return math.exp(statistics.mean(math.log(v) for v in values))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--busy-rounds", type=int, default=7)
    parser.add_argument("--nets", default="", help="comma-separated names (default: all)")
    args = parser.parse_args()
    import cv2

    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    wanted = [name for name in args.nets.split(",") if name]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {cpu_kind()}, "
          f"torch {torch.__version__}, OpenCV {cv2.__version__}, 2 threads each; quiet "
          f"{args.rounds} rounds, busy (two spinning processes) {args.busy_rounds} rounds; "
          "medians in ms")
    print("| net | faithful | optimized | OpenCV | faithful / OpenCV | optimized / OpenCV | "
          "busy: optimized | busy: OpenCV | busy optimized / OpenCV | slowdown optimized | "
          "slowdown OpenCV |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (prototxt, weights, shape) in zoo(Path(tmp), wanted).items():
            runs = runners(prototxt, weights, shape)
            quiet = medians(runs, args.rounds)
            busy = busy_medians({k: runs[k] for k in ("optimized", "opencv")}, args.busy_rounds)
            row = dict(faithful=quiet["faithful"] / quiet["opencv"],
                       optimized=quiet["optimized"] / quiet["opencv"],
                       busy=busy["optimized"] / busy["opencv"],
                       ours_slowdown=busy["optimized"] / quiet["optimized"],
                       peer_slowdown=busy["opencv"] / quiet["opencv"])
            rows.append(row)
            print(f"| {name} | {quiet['faithful']:.1f} | {quiet['optimized']:.1f} | "
                  f"{quiet['opencv']:.1f} | {row['faithful']:.2f}x | {row['optimized']:.2f}x | "
                  f"{busy['optimized']:.1f} | {busy['opencv']:.1f} | {row['busy']:.2f}x | "
                  f"{row['ours_slowdown']:.2f} | {row['peer_slowdown']:.2f} |", flush=True)
    means = {key: geomean(row[key] for row in rows) for key in rows[0]}
    print(f"| **geometric mean** | | | | **{means['faithful']:.2f}x** | "
          f"**{means['optimized']:.2f}x** | | | **{means['busy']:.2f}x** | "
          f"**{means['ours_slowdown']:.2f}** | **{means['peer_slowdown']:.2f}** |")


if __name__ == "__main__":
    main()
