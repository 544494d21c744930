"""Parse + validate + shapes for FCN-8s and a GoogLeNet-sized net, against peers in the same run.

Peers: protobuf's own text_format.Parse (parsing only, no checks) and OpenCV
4.12's Caffe importer (cv2.dnn.readNetFromCaffe on the prototxt alone).
Run: python bench/bench_parse.py   (prints a markdown table)
"""
from __future__ import annotations

import platform
import sys
import tempfile
import time
from pathlib import Path

from google.protobuf import text_format

from netdef.compiler.analysis import check_net
from netdef.proto import netdef_pb2 as pb

from nets import inception_net  # noqa: E402  (bench/ is on sys.path when run as a script)
from timing import timed  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FCN8S = ROOT.parent / "shared/corpus/shelhamer+fcn.berkeleyvision.org/voc-fcn8s/deploy.prototxt"


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
            ours = timed(lambda: check_net(path), 30)
            peer = timed(lambda: text_format.Parse(text, pb.NetParameter()), 30)
            cv = opencv_import(path)
            cv_ms = timed(cv, 30) if cv else None
            cv_cells = (f"{cv_ms[0]:.1f} ms (median {cv_ms[1]:.1f})", f"{ours[0] / cv_ms[0]:.2f}x") \
                if cv_ms else ("n/a", "n/a")
            print(f"| {label} | {len(net.layers)} | {ours[0]:.1f} ms (median {ours[1]:.1f}) | "
                  f"{peer[0]:.1f} ms (median {peer[1]:.1f}) | {ours[0] / peer[0]:.2f}x | "
                  f"{cv_cells[0]} | {cv_cells[1]} |")


if __name__ == "__main__":
    main()
