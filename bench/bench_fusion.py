"""optimize=True with and without one of its passes, with OpenCV 4.12's Caffe importer as the
peer: quiet, 2 threads each, interleaved in one process (one forward of each per round).
By default the convolution + ReLU fusion (ConvReLU) on the zoo's nets (bench_zoo.py);
`--upsampling` instead times densify_upsampling on the nets it rewrites: the flagship FCN-8s
(models/fcn8s.prototxt, whose upsampling has one group per class) at 500 x 500. `--packing`
times the packed convolution weights (PackedConv2d and ConvReLU) against the same module with
oneDNN given the plain weights at each call. `--sums` times fuse_residual_sums (ConvAdd,
ConvAddReLU) on the zoo's nets, `--affine-relu` fuse_affine_relu (ChannelAffine with its ReLU),
`--siblings` merge_sibling_convolutions. Prints the medians and the ratios.

Run: python bench/bench_fusion.py [--rounds N] [--nets NAME,...] [--upsampling | --packing |
     --sums | --affine-relu | --siblings]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import netdef  # first: netdef sets its OpenMP default before torch loads  # isort: skip
import torch

from netdef.compiler import optimize as passes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_optimize import ROOT, seeded_weights  # noqa: E402
from bench_zoo import cpu_kind, geomean, medians, runners, zoo  # noqa: E402


def without(pass_name: str, prototxt, weights):
    """optimize=True with one pass switched off for this one build."""
    kept = getattr(passes, pass_name)
    setattr(passes, pass_name, lambda module: 0)
    try:
        return netdef.load(prototxt, weights, optimize=True)
    finally:
        setattr(passes, pass_name, kept)


def unpacked(prototxt, weights):
    """optimize=True with its convolutions handing oneDNN the plain weights at every call."""
    from netdef.runtime import PackedConv2d

    module = netdef.load(prototxt, weights, optimize=True)
    for layer in module.modules():
        if isinstance(layer, PackedConv2d):
            layer._packed = lambda x, layer=layer: layer.weight
    return module


def flagship(folder: Path) -> dict:
    """The nets densify_upsampling rewrites, with seeded weights: the flagship FCN-8s, its
    TRAIN-only layers left out (OpenCV reads every layer whatever its phase)."""
    from google.protobuf import text_format

    from netdef.proto import netdef_pb2 as pb

    net = text_format.Parse((ROOT / "models" / "fcn8s.prototxt").read_text(), pb.NetParameter())
    kept = [layer for layer in net.layer if all(rule.phase != pb.TRAIN for rule in layer.include)]
    del net.layer[:]
    net.layer.extend(kept)
    prototxt, weights = folder / "fcn8s.prototxt", folder / "fcn8s.caffemodel"
    prototxt.write_text(text_format.MessageToString(net))
    seeded_weights(prototxt, weights)
    return {"FCN-8s (flagship)": (prototxt, weights, (1, 3, 500, 500))}


# flags that time one more pass on the zoo
ONE_PASS = {"sums": "fuse_residual_sums", "affine-relu": "fuse_affine_relu",
            "siblings": "merge_sibling_convolutions"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--nets", default="", help="comma-separated names (default: all)")
    parser.add_argument("--upsampling", action="store_true",
                        help="time densify_upsampling on the flagship FCN-8s instead")
    parser.add_argument("--packing", action="store_true",
                        help="time packed convolution weights instead")
    for flag, pass_name in ONE_PASS.items():
        parser.add_argument(f"--{flag}", dest=pass_name, action="store_true",
                            help=f"time {pass_name} on the zoo instead")
    args = parser.parse_args()
    pass_name = "densify_upsampling" if args.upsampling else "fuse_convolution_relu"
    pass_name = next((name for name in ONE_PASS.values() if getattr(args, name)), pass_name)
    if args.packing:
        pass_name = "packed weights"
    import cv2

    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    print(f"# {cpu_kind()}, torch {torch.__version__}, OpenCV {cv2.__version__}, 2 threads "
          f"each, {args.rounds} quiet rounds; {pass_name} off and on; medians in ms")
    print("| net | off | on | OpenCV | on / off | off / OpenCV | on / OpenCV |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        wanted = [name for name in args.nets.split(",") if name]
        nets = flagship(Path(tmp)) if args.upsampling else zoo(Path(tmp), wanted)
        for name, (prototxt, weights, shape) in nets.items():
            off = (unpacked(prototxt, weights) if args.packing
                   else without(pass_name, prototxt, weights))
            runs = runners(prototxt, weights, shape, off=off,
                           on=netdef.load(prototxt, weights, optimize=True))
            ms = medians(runs, args.rounds)
            row = {"gain": ms["on"] / ms["off"], "off": ms["off"] / ms["opencv"],
                   "on": ms["on"] / ms["opencv"]}
            rows.append(row)
            print(f"| {name} | {ms['off']:.1f} | {ms['on']:.1f} | {ms['opencv']:.1f} | "
                  f"{row['gain']:.2f} | {row['off']:.2f}x | {row['on']:.2f}x |", flush=True)
    means = {key: geomean(row[key] for row in rows) for key in rows[0]}
    print(f"| **geometric mean** | | | | **{means['gain']:.2f}** | **{means['off']:.2f}x** | "
          f"**{means['on']:.2f}x** |")


if __name__ == "__main__":
    main()
