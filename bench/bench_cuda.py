"""netdef on a CUDA GPU (issue #17's GPU items), in one call that fits a short lease.

1. FCN-8s at 500 x 500, batch 1: netdef's faithful and optimized modules in float32 against
   the same net written by hand in eager PyTorch (bench/fcn8s_by_hand.py); then the fast paths
   (bf16 + channels_last replayed as a CUDA graph, `netdef.fast`, and the AOTInductor package
   loaded in a fresh process by bench/aoti_probe.py) against the hardware floor: FLOPs over the bf16 matrix rate measured in the same run.
2. The zoo (bench_zoo.py's nets) on CUDA: faithful, optimized, and optimized bf16 as a graph.

Weights are seeded (bench_optimize.seeded_blob; nsfw keeps its real ones) and bound by
netdef.load from a safetensors file. Times are medians of CUDA-event timings over rounds that
interleave the variants, after warm-up. Every variant's output is compared with netdef's
faithful module run in float64 on the same GPU (relative L2 error); the hand-written net
checks that the faithful module computes FCN-8s at all.

Run: python bench/bench_cuda.py [--rounds N] [--nets NAME,...] [--compile-budget SECONDS]
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import netdef  # first: netdef sets its OpenMP default before torch loads  # isort: skip
import torch
from safetensors.torch import save_file

from netdef.compiler.analysis import check_net
from netdef.compiler.bind import build_module

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_optimize import seeded_blob  # noqa: E402
from bench_zoo import zoo_nets  # noqa: E402
from fcn8s_by_hand import FCN8s  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FCN8S = ROOT / "models" / "fcn8s.prototxt"


# ------------------------------------------------------------------ inputs and weights
def seeded_file(text: str, path: Path, device: str) -> Path:
    """Seeded weights keyed `module.tensor`, as netdef.load reads a .safetensors file."""
    net, _ = check_net(text)
    module = build_module(net, device="meta")
    generator = torch.Generator(device).manual_seed(0)
    tensors = {}
    for _, target, names in module.caffe_parameters:
        for name in names:
            shape = tuple(getattr(module.get_submodule(target), name).shape)
            tensors[f"{target}.{name}"] = seeded_blob(name, shape, generator).cpu()
    save_file(tensors, str(path))
    return path


def image_like(shape, device) -> torch.Tensor:
    """Mean-subtracted pixels: values of tens, as a Caffe net's input has them."""
    generator = torch.Generator(device).manual_seed(1)
    return 50 * torch.randn(shape, generator=generator, device=device)


# ------------------------------------------------------------------ timing
def event_medians(runs: dict, rounds: int) -> dict:
    """kind -> median milliseconds of one call, timed with CUDA events, kinds interleaved."""
    for fn in runs.values():
        fn()
        fn()
    torch.cuda.synchronize()
    times = {kind: [] for kind in runs}
    for _ in range(rounds):
        for kind, fn in runs.items():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times[kind].append(start.elapsed_time(end))
    return {kind: statistics.median(values) for kind, values in times.items()}


def graphed(forward):
    """`forward` (no arguments, static inputs) captured as a CUDA graph: (replay, its output)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.no_grad():
        for _ in range(3):  # cuDNN picks its algorithms outside the capture
            forward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        output = forward()
    return graph.replay, output


def matmul_ceiling() -> float:
    """bf16 TFLOP/s of an 8192^3 product on random data: the floor's rate, measured here."""
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    ms = event_medians({"mm": lambda: a @ b}, 10)["mm"]
    return 2 * 8192 ** 3 / ms / 1e9


def relative_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    output, reference = output.double(), reference.double()
    if not torch.isfinite(output).all():
        return math.inf
    return float((output - reference).norm() / reference.norm())


class Variant:
    """A named forward (no arguments) and a way to read what its last call produced."""

    def __init__(self, forward, output=None):
        self.forward, self._output = forward, output

    def output(self) -> torch.Tensor:
        """A graph's output buffer holds nothing until the graph has been replayed."""
        result = self.forward()
        return self._output if self._output is not None else result


def eager(module, feeds: dict, blob: str) -> Variant:
    def forward():
        with torch.no_grad():
            return module(**feeds)[blob]
    return Variant(forward)


def as_graph(module, feeds: dict, blob: str) -> Variant:
    replay, output = graphed(lambda: module(**feeds)[blob])
    return Variant(replay, output)


def half_feeds(feeds: dict) -> dict:
    return {name: value.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
            for name, value in feeds.items()}


# ------------------------------------------------------------------ 1. FCN-8s
def fcn8s_variants(weights: Path, x: torch.Tensor, deadline: float, log: dict) -> dict:
    text, feeds = FCN8S.read_text(), {"data": x}
    faithful = netdef.load(text, weights, device="cuda")
    optimized = netdef.load(text, weights, device="cuda", optimize=True)
    hand = FCN8s().cuda().eval().copy_from(faithful)
    hand_half = copy.deepcopy(hand).to(torch.bfloat16, memory_format=torch.channels_last)
    ours_half = netdef.load(text, weights, device="cuda", dtype=torch.bfloat16, optimize=True)
    x_half = half_feeds(feeds)["data"]
    variants = {
        "by hand, eager fp32": Variant(lambda: _no_grad(hand, x)),
        "netdef faithful fp32": eager(faithful, feeds, "score"),
        "netdef optimized fp32": eager(optimized, feeds, "score"),
        "by hand, eager fp32, no TF32": Variant(lambda: _strict(lambda: _no_grad(hand, x))),
        "netdef optimized fp32, no TF32": Variant(
            lambda: _strict(lambda: optimized(data=x)["score"])),
        "by hand, bf16 channels_last, CUDA graph": Variant(*graphed(lambda: hand_half(x_half))),
        "netdef optimized bf16, CUDA graph": as_graph(ours_half, {"data": x_half}, "score"),
    }
    variants.update(compiled_variants(optimized, feeds, "score", deadline, log))
    return variants


def compiled_variants(module, feeds: dict, blob: str, deadline: float, log: dict) -> dict:
    """netdef.fast (torch.compile, bf16, CUDA graphs), compiled if time is left; its compile
    time goes to `log`. (The AOTInductor package is timed in a process of its own: aoti_probes.)"""
    variants = {}
    if time.monotonic() < deadline:
        start = time.monotonic()
        fast = netdef.fast(module)
        fast(**feeds)
        log["netdef.fast compile s"] = round(time.monotonic() - start, 1)
        variants["netdef.fast (bf16, torch.compile)"] = Variant(lambda: fast(**feeds)[blob])
    return variants


def _no_grad(module, x):
    with torch.no_grad():
        return module(x)


def _strict(forward):
    """float32 arithmetic throughout: cuDNN's TF32 off for this call only."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            return forward()
    finally:
        torch.backends.cudnn.allow_tf32 = before


def fcn8s_section(folder: Path, rounds: int, rate: float, deadline: float) -> dict:
    text = FCN8S.read_text()
    weights = seeded_file(text, folder / "fcn8s.safetensors", "cuda")
    net, _ = check_net(text)
    shape = net.blobs["data"].shape
    x = image_like(shape, "cuda")
    with torch.no_grad():
        reference = netdef.load(text, weights, device="cuda", dtype=torch.float64)(
            data=x.double())["score"]
    log = {}
    variants = fcn8s_variants(weights, x, deadline, log)
    errors = {kind: relative_error(variant.output(), reference)
              for kind, variant in variants.items()}
    medians = event_medians({kind: v.forward for kind, v in variants.items()}, rounds)
    flops = netdef.analyze(FCN8S).totals()["flops"]
    floor_ms = flops / rate / 1e9
    print(f"\n## FCN-8s, {' x '.join(map(str, shape))}: {flops / 1e9:.0f} GFLOP; floor at the measured "
          f"{rate:.0f} TFLOP/s (bf16): {floor_ms:.3f} ms\n")
    print("| variant | median ms | / by hand eager fp32 | / floor | rel. error vs float64 |")
    print("|---|---|---|---|---|")
    base = medians["by hand, eager fp32"]
    for kind, ms in medians.items():
        print(f"| {kind} | {ms:.3f} | {ms / base:.2f}x | {ms / floor_ms:.1f}x | "
              f"{errors[kind]:.1e} |")
    for key, value in log.items():
        print(f"- {key}: {value}")
    if time.monotonic() < deadline:
        log["aoti"] = aoti_probes(folder, x, reference)
    return {"medians_ms": medians, "errors": errors, "flops": flops, "floor_ms": floor_ms, **log}


def aoti_probes(folder: Path, x: torch.Tensor, reference: torch.Tensor) -> list:
    """FCN-8s's optimized bf16 module as an AOTInductor package for CUDA, loaded and timed by
    bench/aoti_probe.py in fresh processes, with netdef's loader and with torch's."""
    from netdef.compiler.codegen import export_program

    module = netdef.load(FCN8S, folder / "fcn8s.safetensors", device="cuda",
                         dtype=torch.bfloat16, optimize=True)
    start = time.monotonic()
    name = export_program(module, {"data": tuple(x.shape)}, folder, "aoti")
    print(f"- AOTInductor package (bf16) compiled in {time.monotonic() - start:.1f} s")
    torch.save({"data": x.to(torch.bfloat16)}, folder / "feeds.pt")
    torch.save(reference, folder / "reference.pt")
    lines = []
    for loader in ("netdef", "torch"):
        probe = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("aoti_probe.py")), str(folder / name),
             str(folder / "feeds.pt"), str(folder / "reference.pt"), "score", loader],
            capture_output=True, text=True, timeout=120)
        line = (probe.stdout.strip().splitlines() or [""])[-1] if probe.returncode == 0 else \
            f"loader {loader}: exit {probe.returncode}: {probe.stderr.strip()[-300:]}"
        print(f"- {line}", flush=True)
        lines.append(line)
    return lines


def dense_upsampling(module: torch.nn.Module) -> torch.nn.Module:
    """Depthwise transposed convolutions (FCN's bilinear upsampling: groups = channels) as dense
    ones with block-diagonal weights, in place: more FLOPs, but tensor-core kernels."""
    for name, child in list(module.named_modules()):
        if (isinstance(child, torch.nn.ConvTranspose2d) and child.groups > 1
                and child.groups == child.in_channels == child.out_channels):
            dense = torch.nn.ConvTranspose2d(
                child.in_channels, child.out_channels, child.kernel_size, child.stride,
                child.padding, child.output_padding, bias=child.bias is not None,
                dilation=child.dilation).to(child.weight)
            with torch.no_grad():
                dense.weight.zero_()
                for channel in range(child.in_channels):
                    dense.weight[channel, channel] = child.weight[channel, 0]
                if child.bias is not None:
                    dense.bias.copy_(child.bias)
            dense = dense.to(memory_format=torch.channels_last)
            parent, _, leaf = name.rpartition(".")
            setattr(module.get_submodule(parent) if parent else module, leaf, dense)
    return module


def graph_experiments(folder: Path, rounds: int, rate: float) -> dict:
    """FCN-8s's bf16 graph: cuDNN's heuristics against its benchmark mode (the algorithms are
    fixed when the graph is captured), and dense upsampling."""
    weights = folder / "fcn8s.safetensors"
    if not weights.exists():
        seeded_file(FCN8S.read_text(), weights, "cuda")
    net, _ = check_net(FCN8S)
    x = image_like(net.blobs["data"].shape, "cuda")
    with torch.no_grad():
        reference = netdef.load(FCN8S, weights, device="cuda", dtype=torch.float64)(
            data=x.double())["score"]
    feeds = half_feeds({"data": x})
    variants = {}
    for benchmark, dense in ((False, False), (True, False), (False, True), (True, True)):
        torch.backends.cudnn.benchmark = benchmark
        module = netdef.load(FCN8S, weights, device="cuda", dtype=torch.bfloat16, optimize=True)
        if dense:
            dense_upsampling(module)
        name = (f"bf16 graph, cuDNN {'benchmark' if benchmark else 'heuristics'}"
                f"{', dense upsampling' if dense else ''}")
        variants[name] = as_graph(module, feeds, "score")
    torch.backends.cudnn.benchmark = False
    errors = {kind: relative_error(v.output(), reference) for kind, v in variants.items()}
    medians = event_medians({kind: v.forward for kind, v in variants.items()}, rounds)
    floor_ms = netdef.analyze(FCN8S).totals()["flops"] / rate / 1e9
    print("\n## FCN-8s bf16 CUDA graphs: cuDNN algorithm choice and dense upsampling\n")
    print("| variant | median ms | / floor | rel. error vs float64 |")
    print("|---|---|---|---|")
    for kind, ms in medians.items():
        print(f"| {kind} | {ms:.3f} | {ms / floor_ms:.1f}x | {errors[kind]:.1e} |", flush=True)
    return {"medians_ms": medians, "errors": errors}


# ------------------------------------------------------------------ 2. the zoo
def zoo_section(folder: Path, wanted, rounds: int, rate: float) -> dict:
    print("\n## The zoo on CUDA, batch 1: median ms (rel. error vs float64)\n")
    print("| net | GFLOP | faithful fp32 | optimized fp32 | optimized bf16, CUDA graph | "
          "faithful / optimized bf16 graph | TFLOP/s (bf16 graph) | floor ms |")
    print("|---|---|---|---|---|---|---|---|")
    results = {}
    for name, source in zoo_nets(wanted).items():
        try:
            results[name] = zoo_row(folder, name, source, rounds, rate)
        except Exception:  # noqa: BLE001  one net's failure is reported, the rest still run
            print(f"| {name} | failed: {traceback.format_exc().splitlines()[-1][:200]} |")
            traceback.print_exc()
    return results


def zoo_row(folder: Path, name: str, source, rounds: int, rate: float) -> dict:
    if isinstance(source, tuple):
        prototxt, weights = source
    else:
        prototxt = folder / f"{name}.prototxt"
        prototxt.write_text(source)
        weights = seeded_file(source, folder / f"{name}.safetensors", "cuda")
    net, _ = check_net(prototxt)
    input_name = net.input_blobs[0]
    x = image_like(net.blobs[input_name].shape, "cuda")
    faithful = netdef.load(prototxt, weights, device="cuda")
    blob = next(iter(faithful(**{input_name: x})))
    with torch.no_grad():
        reference = netdef.load(prototxt, weights, device="cuda", dtype=torch.float64)(
            **{input_name: x.double()})[blob]
    optimized = netdef.load(prototxt, weights, device="cuda", optimize=True)
    half = netdef.load(prototxt, weights, device="cuda", dtype=torch.bfloat16, optimize=True)
    variants = {"faithful": eager(faithful, {input_name: x}, blob),
                "optimized": eager(optimized, {input_name: x}, blob),
                "bf16 graph": as_graph(half, half_feeds({input_name: x}), blob)}
    errors = {kind: relative_error(v.output(), reference) for kind, v in variants.items()}
    medians = event_medians({kind: v.forward for kind, v in variants.items()}, rounds)
    flops = netdef.analyze(prototxt).totals()["flops"]
    floor_ms = flops / rate / 1e9
    cells = " | ".join(f"{medians[k]:.3f} ({errors[k]:.0e})" for k in variants)
    print(f"| {name} | {flops / 1e9:.1f} | {cells} | "
          f"{medians['faithful'] / medians['bf16 graph']:.1f}x | "
          f"{flops / medians['bf16 graph'] / 1e9:.0f} | {floor_ms:.3f} |", flush=True)
    del faithful, optimized, half
    torch.cuda.empty_cache()
    return {"medians_ms": medians, "errors": errors, "flops": flops}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--nets", default="", help="the zoo's nets (comma-separated; all)")
    parser.add_argument("--compile-budget", type=float, default=240,
                        help="seconds from the start after which nothing more is compiled")
    parser.add_argument("--json", default="", help="also write the numbers here")
    parser.add_argument("--sections", default="fcn8s,zoo",
                        help="comma-separated: fcn8s, zoo, graphs (cuDNN and upsampling trials)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_cuda.py needs a CUDA GPU")
    deadline = time.monotonic() + args.compile_budget
    properties = torch.cuda.get_device_properties(0)
    rate = matmul_ceiling()
    print(f"# {properties.name}, {properties.multi_processor_count} SMs, "
          f"{properties.total_memory / 2 ** 30:.0f} GiB; torch {torch.__version__}, cuDNN "
          f"{torch.backends.cudnn.version()}; cuDNN TF32 {torch.backends.cudnn.allow_tf32} "
          f"(PyTorch's default); {args.rounds} rounds; bf16 8192^3 product: {rate:.0f} TFLOP/s")
    results = {"device": properties.name, "torch": torch.__version__, "matmul_tflops": rate}
    sections = args.sections.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        if "fcn8s" in sections:
            results["fcn8s"] = fcn8s_section(Path(tmp), args.rounds, rate, deadline)
        if "graphs" in sections:
            results["graphs"] = graph_experiments(Path(tmp), args.rounds, rate)
        if "zoo" in sections:
            wanted = [name for name in args.nets.split(",") if name]
            results["zoo"] = zoo_section(Path(tmp), wanted, args.rounds, rate)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
