"""`netdef draw` wall time for every corpus net, the models and generated GoogLeNet/ResNet-152
sized nets, svg and png, against graphviz's `dot` alone on the same DOT text (the floor:
layout and rendering, which netdef hands to dot).

Run: python bench/bench_draw.py   (prints a markdown table; needs `dot`)
"""
from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nets import inception_net, resnet_net  # bench/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"


def wall(command: list[str], stdin: bytes | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, input=stdin, check=True, capture_output=True)
    return time.perf_counter() - start


def best(command, stdin=None, repeat=3) -> float:
    return min(wall(command, stdin) for _ in range(repeat))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generated = {"GoogLeNet-sized": inception_net(), "ResNet-152-sized": resnet_net()}
        nets = {label: tmp / f"{label}.prototxt" for label in generated}
        for label, text in generated.items():
            nets[label].write_text(text)
        nets.update({f"models/{p.stem}": p for p in sorted((ROOT / "models").glob("*.prototxt"))})
        nets.update({str(p.relative_to(CORPUS)): p for p in sorted(CORPUS.rglob("*.prototxt"))})
        print(f"machine: {platform.machine()}, {platform.node()}, Python {sys.version.split()[0]}, "
              f"{subprocess.run(['dot', '-V'], capture_output=True, text=True).stderr.strip()}, "
              f"{time.strftime('%Y-%m-%d')}")
        print("| net | layers | netdef draw svg (s) | dot -Tsvg alone (s) | ratio | "
              "netdef draw png (s) | dot -Tpng alone (s) | ratio |")
        print("|---|---|---|---|---|---|---|---|")
        worst = 0.0
        for label, path in nets.items():
            dot_file = tmp / "net.dot"
            subprocess.run(["netdef", "draw", str(path), "-o", str(dot_file)], check=True,
                           capture_output=True)
            dot_text = dot_file.read_bytes()
            layers = sum(1 for line in path.read_text().splitlines()
                         if line.strip().startswith(("layer {", "layers {", "layer{", "layers{")))
            cells = []
            for fmt in ("svg", "png"):
                ours = best(["netdef", "draw", str(path), "-o", str(tmp / f"net.{fmt}")])
                floor = best(["dot", f"-T{fmt}", "-o", str(tmp / f"floor.{fmt}")], dot_text)
                worst = max(worst, ours)
                cells += [f"{ours:.2f}", f"{floor:.2f}", f"{ours / floor:.2f}x"]
            print(f"| {label} | {layers} | " + " | ".join(cells) + " |")
        print(f"\nslowest netdef draw: {worst:.2f} s (target: under 2 s)")


if __name__ == "__main__":
    main()
