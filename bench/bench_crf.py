"""The CRF-RNN head (MultiStageMeanfield, 21 classes, 10 iterations, thetas 160/3/3, weights
3/5) through a prototxt and netdef.load, against pydensecrf2 (Kraehenbuehl's C++ dense CRF
set up as Caffe's model) on the same scene in the same run.

Run: python bench/bench_crf.py [--repeat N] [--sizes 125,250,500,1000]
Prints a markdown table: time at each size for both (contenders interleaved, netdef cold:
its spatial lattice rebuilt every call as pydensecrf2 does), time per pixel (linear growth
keeps it flat), peak memory of one call measured in a fresh process, and CUDA time when
a GPU is present.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import numpy as np
import torch

import netdef
from timing import timed  # bench/ is on sys.path when run as a script

CLASSES, ITERATIONS, ALPHA, BETA, GAMMA, SPATIAL, BILATERAL = 21, 10, 160.0, 3.0, 3.0, 3.0, 5.0


def scene(height: int, width: int, seed: int = 0):
    """A photo-like synthetic scene: a few flat regions with noisy colours, a disc, and
    unaries favouring the truth a little. Noise makes the bilateral lattice large."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((height, width), int)
    labels[:, width // 3:] = 1
    labels[height // 2:, 2 * width // 3:] = 2
    ys, xs = np.mgrid[:height, :width]
    labels[(ys - height / 3) ** 2 + (xs - width / 4) ** 2 < (min(height, width) / 6) ** 2] = 3
    palette = rng.uniform(0, 255, (CLASSES, 3))
    image = np.clip(palette[labels] + rng.normal(0, 12, (height, width, 3)), 0, 255)
    unary = rng.normal(0, 1.0, (CLASSES, height, width)).astype(np.float32)
    unary[labels, ys, xs] += 1.0
    return unary, image.astype(np.uint8)


def crf_prototxt(height: int, width: int) -> str:
    weights = lambda w: " ".join([str(w)] * CLASSES)  # noqa: E731
    return f"""
input: "unary" input_shape {{ dim: 1 dim: {CLASSES} dim: {height} dim: {width} }}
input: "image" input_shape {{ dim: 1 dim: 3 dim: {height} dim: {width} }}
layer {{ name: "split" type: "Split" bottom: "unary" top: "u" top: "q0" }}
layer {{ name: "crf" type: "MultiStageMeanfield" bottom: "u" bottom: "q0" bottom: "image"
  top: "pred" multi_stage_meanfield_param {{ num_iterations: {ITERATIONS}
  theta_alpha: {ALPHA} theta_beta: {BETA} theta_gamma: {GAMMA}
  spatial_filter_weights_str: "{weights(SPATIAL)}"
  bilateral_filter_weights_str: "{weights(BILATERAL)}" }} }}
"""


def netdef_runner(unary, image, device="cpu"):
    classes, height, width = unary.shape
    model = netdef.load(crf_prototxt(height, width), device=device)
    layer = model.get_submodule("crf")
    feeds = dict(unary=torch.from_numpy(unary)[None].to(device),
                 image=torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32))[None]
                 .to(device))

    def run():
        layer._spatial_cache.clear()  # cold: every lattice built in the call
        with torch.no_grad():
            out = model(**feeds)["pred"]
        if device != "cpu":
            torch.cuda.synchronize()
        return out
    return run


def densecrf_runner(unary, image):
    import pydensecrf.densecrf as dcrf
    classes, height, width = unary.shape
    energy = np.ascontiguousarray(-unary.reshape(classes, -1))
    rgb = np.ascontiguousarray(image)

    def run():
        crf = dcrf.DenseCRF2D(width, height, classes)
        crf.setUnaryEnergy(energy)
        crf.addPairwiseGaussian(sxy=GAMMA, compat=SPATIAL, kernel=dcrf.DIAG_KERNEL,
                                normalization=dcrf.NORMALIZE_AFTER)
        crf.addPairwiseBilateral(sxy=ALPHA, srgb=BETA, rgbim=rgb, compat=BILATERAL,
                                 kernel=dcrf.DIAG_KERNEL, normalization=dcrf.NORMALIZE_AFTER)
        return np.array(crf.inference(ITERATIONS))
    return run


def peak_memory(which: str, size: int) -> float:
    """MiB of peak RSS above the process's RSS just before the call, in a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--memory-of", which, str(size)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["mib"]


def _memory_child(which: str, size: int) -> None:
    unary, image = scene(size, size)
    run = netdef_runner(unary, image) if which == "netdef" else densecrf_runner(unary, image)
    before = _rss_mib()
    run()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mib": peak - before}))


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2 ** 20


def agreement(unary, image) -> float:
    ours = netdef_runner(unary, image)()[0].argmax(0).numpy()
    theirs = densecrf_runner(unary, image)().reshape(unary.shape).argmax(0)
    return float((ours == theirs).mean())


def interleaved(contenders: dict, repeat: int) -> dict:
    """Median ms of each, one call of each per round (drift hits all alike), after a warm-up."""
    times = {name: [] for name in contenders}
    for run in contenders.values():
        run()
    for _ in range(repeat):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: float(np.median(t)) for name, t in times.items()}


def cpu_name() -> str:
    with open("/proc/cpuinfo") as info:
        names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    return f"{names[0] if names else platform.machine()} x{len(names)}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sizes", default="125,250,500,1000")
    parser.add_argument("--memory-of", nargs=2, metavar=("WHICH", "SIZE"))
    args = parser.parse_args()
    if args.memory_of:
        return _memory_child(args.memory_of[0], int(args.memory_of[1]))

    print(f"machine: {cpu_name()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print("| image | netdef (cold) | pydensecrf2 | ratio | netdef us/pixel | pydensecrf2 "
          "us/pixel | peak MiB netdef / pydensecrf2 | argmax agreement |")
    print("|---|---|---|---|---|---|---|---|")
    for size in [int(s) for s in args.sizes.split(",")]:
        unary, image = scene(size, size)
        medians = interleaved({"netdef": netdef_runner(unary, image),
                               "pydensecrf2": densecrf_runner(unary, image)},
                              args.repeat if size <= 500 else max(1, args.repeat // 2))
        ours, theirs, pixels = medians["netdef"], medians["pydensecrf2"], size * size
        print(f"| {size}x{size} | {ours:.0f} ms | {theirs:.0f} ms | {ours / theirs:.2f}x | "
              f"{1000 * ours / pixels:.2f} | {1000 * theirs / pixels:.2f} | "
              f"{peak_memory('netdef', size):.0f} / {peak_memory('pydensecrf2', size):.0f} | "
              f"{agreement(unary, image):.3f} |", flush=True)
    if torch.cuda.is_available():
        unary, image = scene(500, 500)
        run = netdef_runner(unary, image, device="cuda")
        best, median = timed(run, args.repeat * 4)
        print(f"\nCUDA {torch.cuda.get_device_name()}: 500x500 cold {median:.1f} ms "
              f"(best {best:.1f})")


if __name__ == "__main__":
    main()
