"""Parse + validate + shapes for FCN-8s and a GoogLeNet-sized net, against peers in the same run.

Peers: protobuf's own text_format.Parse (parsing only, no checks) and OpenCV
4.12's Caffe importer (cv2.dnn.readNetFromCaffe on the prototxt alone).
Run: python bench/bench_parse.py   (prints a markdown table)
"""
from __future__ import annotations

import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from google.protobuf import text_format

from netdef.compiler.analysis import check_net
from netdef.proto import netdef_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
FCN8S = ROOT.parent / "shared/corpus/shelhamer+fcn.berkeleyvision.org/voc-fcn8s/deploy.prototxt"


def inception_net(blocks: int = 9) -> str:
    """A GoogLeNet-sized net (stem + `blocks` inception modules + classifier), ~150 layers."""
    out = ['name: "inception"', 'layer { name: "data" type: "Input" top: "data" '
           'input_param { shape { dim: 10 dim: 3 dim: 224 dim: 224 } } }']

    def conv(name, bottom, num, kernel, stride=1, pad=0):
        out.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
                   f'param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }} '
                   f'convolution_param {{ num_output: {num} kernel_size: {kernel} stride: {stride} '
                   f'pad: {pad} weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" '
                   f'value: 0.2 }} }} }}')
        out.append(f'layer {{ name: "{name}_relu" type: "ReLU" bottom: "{name}" top: "{name}" }}')
        return name

    def pool(name, bottom, kernel, stride, pad=0, method="MAX"):
        out.append(f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{name}" '
                   f'pooling_param {{ pool: {method} kernel_size: {kernel} stride: {stride} pad: {pad} }} }}')
        return name

    x = pool("pool1", conv("conv1", "data", 64, 7, 2, 3), 3, 2)
    x = pool("pool2", conv("conv2", conv("conv2r", x, 64, 1), 192, 3, 1, 1), 3, 2)
    for b in range(blocks):
        branches = [conv(f"i{b}_1x1", x, 64, 1),
                    conv(f"i{b}_3x3", conv(f"i{b}_3x3r", x, 96, 1), 128, 3, 1, 1),
                    conv(f"i{b}_5x5", conv(f"i{b}_5x5r", x, 16, 1), 32, 5, 1, 2),
                    conv(f"i{b}_pp", pool(f"i{b}_pool", x, 3, 1, 1), 32, 1)]
        out.append(f'layer {{ name: "i{b}_out" type: "Concat" '
                   + " ".join(f'bottom: "{br}"' for br in branches) + f' top: "i{b}_out" }}')
        x = f"i{b}_out"
        if b in (1, 6):
            x = pool(f"pool_{b}", x, 3, 2)
    x = pool("gpool", x, 7, 1, method="AVE")
    out.append(f'layer {{ name: "drop" type: "Dropout" bottom: "{x}" top: "{x}" '
               'dropout_param { dropout_ratio: 0.4 } }')
    out.append(f'layer {{ name: "fc" type: "InnerProduct" bottom: "{x}" top: "fc" '
               'inner_product_param { num_output: 1000 } }')
    out.append('layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }')
    return "\n".join(out) + "\n"


def best_ms(fn, repeat: int = 30) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000, statistics.median(times) * 1000


def opencv_import(path):
    try:
        import cv2
    except ImportError:
        return None
    return lambda: cv2.dnn.readNetFromCaffe(str(path))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        inception = Path(tmp) / "inception.prototxt"
        inception.write_text(inception_net())
        nets = {"FCN-8s (voc-fcn8s/deploy)": FCN8S, "GoogLeNet-sized (generated)": inception}
        print(f"machine: {platform.processor() or platform.machine()}, Python "
              f"{sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}")
        print("| net | layers | netdef check (parse+upgrade+IR+validate+shapes) | "
              "protobuf text_format.Parse | ratio | OpenCV readNetFromCaffe | ratio |")
        print("|---|---|---|---|---|---|---|")
        for label, path in nets.items():
            text = path.read_text()
            net, problems = check_net(path)
            assert not [p for p in problems if not p.warning]
            ours = best_ms(lambda: check_net(path))
            peer = best_ms(lambda: text_format.Parse(text, pb.NetParameter()))
            cv = opencv_import(path)
            cv_ms = best_ms(cv) if cv else None
            cv_cells = (f"{cv_ms[0]:.1f} ms (median {cv_ms[1]:.1f})", f"{ours[0] / cv_ms[0]:.2f}x") \
                if cv_ms else ("n/a", "n/a")
            print(f"| {label} | {len(net.layers)} | {ours[0]:.1f} ms (median {ours[1]:.1f}) | "
                  f"{peer[0]:.1f} ms (median {peer[1]:.1f}) | {ours[0] / peer[0]:.2f}x | "
                  f"{cv_cells[0]} | {cv_cells[1]} |")


if __name__ == "__main__":
    main()
