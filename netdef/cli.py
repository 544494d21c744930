"""The `netdef` command line. Exit codes: 0 ok; 1 a problem in a file the user named (including
one that cannot be read: missing, unreadable, not a regular file) or, last resort, a bug in
netdef, reported in one line; 2 bad usage of the command line itself."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback

from .errors import DataError, NetdefError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 on usage errors; keep that, minus the noise
        self.print_usage(sys.stderr)
        raise UsageError(message)


def _input_spec(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        shape = ()
    if not sep or not name or not shape:
        raise argparse.ArgumentTypeError(f"expected NAME=N,C,H,W, got {text!r}")
    return name, shape


def _input_file(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE (.npy or an image), got {text!r}")
    return name, path


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("netdef")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="netdef", description="Check, analyse and upgrade Caffe network definitions.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"netdef {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    check = commands.add_parser("check", help="report every problem in a net, one per line")
    _net_arguments(check)
    check.add_argument("--strict", action="store_true", help="unknown fields are errors")
    check.add_argument("--json", action="store_true",
                       help="{net, phase, ok, errors, warnings} as JSON, errors included")

    info = commands.add_parser("info", help="shape and producer of every blob")
    _net_arguments(info)
    info.add_argument("--json", action="store_true",
                      help="machine-readable output; a net with errors gives what could be "
                           "analysed and an `errors` list (exit 1)")

    draw = commands.add_parser("draw", help="render the DAG with graphviz (svg, png, pdf or dot)")
    _net_arguments(draw)
    draw.add_argument("-o", "--output", required=True, help="FILE.svg, .png, .pdf or .dot")
    draw.add_argument("--rankdir", default="TB", type=str.upper, choices=["TB", "LR", "BT", "RL"])
    draw.add_argument("--dpi", type=_positive_int, metavar="N",
                      help="resolution of a .png (graphviz's default 96; 48 halves it)")

    compile_ = commands.add_parser("compile", help="write model.py, weights.safetensors, "
                                   "report.json and graph.svg for a net")
    _net_arguments(compile_)
    compile_.add_argument("--weights", help="a .caffemodel (default: the prototxt's fillers)")
    compile_.add_argument("-o", "--output", default="compiled", help="output folder")
    compile_.add_argument("--format", default="fx", choices=["fx", "pt2", "onnx", "aoti"],
                          help="also export torch.export (pt2), ONNX, or an AOTInductor "
                               "package (aoti: compiled kernels; minutes for a big net); "
                               "all with a dynamic batch")
    compile_.add_argument("--device", default="cpu",
                          help="where pt2, onnx and aoti exports run (aoti: cuda compiles "
                               "CUDA kernels); model.py and the weights serve any device")
    compile_.add_argument("--no-optimize", action="store_true",
                          help="keep the faithful module: no BatchNorm/Scale folding, weights "
                               "that netdef.load, run and train can bind")
    _surgery_arguments(compile_)

    run = commands.add_parser("run", help="run a net on .npy arrays or images; write the outputs "
                              "as .npz, or one of them as an image (a region net: its regions)")
    run.add_argument("net")
    run.add_argument("--weights", help="a .caffemodel (default: the prototxt's fillers)")
    run.add_argument("--input", action="append", default=[], required=True,
                     metavar="NAME=FILE", type=_input_file,
                     help="FILE.npy, or an image: 1x3xHxW, BGR, 0..255 minus --mean")
    run.add_argument("--mean", type=_mean, default=(0.0, 0.0, 0.0), metavar="B,G,R",
                     help="subtracted from image inputs, added back to drawn BGR outputs")
    run.add_argument("--out", default="outputs.npz",
                     help="FILE.npz (every output; the default is outputs.npz) or an image: "
                          "scores -> argmax in the VOC palette, 3 channels -> BGR picture, "
                          "1 channel -> grey; a detection net draws its boxes on the input "
                          "image, or writes them to FILE.json; a region net draws each "
                          "pathway's regions here and the regions kept by NMS in FILE-kept.png")
    run.add_argument("--fast", action="store_true",
                     help="run the net exported for --engine on the first --fast run and kept "
                          "in the cache ($NETDEF_CACHE, ~/.cache/netdef) for later ones")
    run.add_argument("--engine", choices=["onnxruntime", "inductor"],
                     help="what runs --fast: onnxruntime (the default on the CPU when it is "
                          "installed: model.onnx) or inductor (an AOTInductor package)")
    run.add_argument("--out-blob", help="the blob drawn to an image or saved, internal ones too "
                     "(default: the net's outputs; draws the first 4-D one)")
    run.add_argument("--labels", metavar="FILE",
                     help="class names, one per line (line i names label i), for detections")
    run.add_argument("--threshold", type=float, default=0.5,
                     help="detections scoring below it are not drawn or written (default 0.5)")
    run.add_argument("--device", default="cpu")
    run.add_argument("--phase", default="TEST", type=str.upper, choices=["TRAIN", "TEST"])
    run.add_argument("--no-optimize", action="store_true",
                     help="run the faithful layer-for-layer module (default in TEST: BatchNorm, "
                          "Scale and Bias folded into convolutions, identities dropped)")
    _surgery_arguments(run)

    recall = commands.add_parser("recall", help="a region net's proposals against ground-truth "
                                 "segments: R@50, R@70, ABO, AR and AR@k")
    recall.add_argument("net")
    recall.add_argument("--weights", help="a .caffemodel (default: the prototxt's fillers)")
    recall.add_argument("--pair", nargs=2, action="append", required=True,
                        metavar=("IMAGE", "SEGMENTS"),
                        help="an image and its segments (an indexed or grey PNG of segment "
                             "ids, 0 = none); repeatable")
    recall.add_argument("--mean", type=_mean, default=(0.0, 0.0, 0.0), metavar="B,G,R")
    recall.add_argument("--top", type=_counts, default=(10, 100, 1000), metavar="K,K,...",
                        help="AR@k for these k (default 10,100,1000)")
    recall.add_argument("--ignore-label", type=int, default=255,
                        help="segment id counted for neither side (default 255)")
    recall.add_argument("--device", default="cpu")
    recall.add_argument("--json", action="store_true", help="machine-readable output")

    convert = commands.add_parser("convert", help="caffemodel -> safetensors, or (-o "
                                  "W.caffemodel --net NET) weights back to a caffemodel")
    convert.add_argument("weights", help="a .caffemodel or .safetensors")
    convert.add_argument("--net", help="name tensors after the net's modules (conv1.weight) "
                                       "instead of layer.blob index (conv1.0)")
    convert.add_argument("-o", "--output", required=True)
    _surgery_arguments(convert)

    upgrade = commands.add_parser("upgrade", help="rewrite a V0/V1 net in the current format")
    upgrade.add_argument("net")
    upgrade.add_argument("-o", "--output", required=True)
    upgrade.add_argument("--solve-crops", action="store_true",
                         help="write the offsets solved from the coordinate maps into every Crop "
                              "that lacks crop_param or disagrees with them")

    diff = commands.add_parser("diff", help="what changed between two nets (exit 0: identical, "
                                            "1: they differ, 2: trouble), as diff does")
    diff.add_argument("a", help="a .prototxt")
    diff.add_argument("b", help="a .prototxt")
    diff.add_argument("--phase", default="TEST", type=str.upper, choices=["TRAIN", "TEST"])
    diff.add_argument("--input", action="append", type=_input_spec, default=[],
                      metavar="NAME=N,C,H,W", help="shape of an input blob, for both nets")
    diff.add_argument("--weights-a", help="A's .caffemodel or .safetensors")
    diff.add_argument("--weights-b", help="B's .caffemodel or .safetensors")
    diff.add_argument("--json", action="store_true", help="the differences as JSON")

    view = commands.add_parser("view", help="one self-contained HTML page of the net: the DAG, "
                               "shapes, costs, problems, receptive fields shown on an image")
    _net_arguments(view)
    view.add_argument("-o", "--output", help="the page to write (default: NET's name + .html, "
                                             "in the current folder)")
    view.add_argument("--image", help="a picture to show receptive fields on (default: a "
                                      "checkerboard); it sizes the net's image input, as in run")
    view.add_argument("--weights", help="a .caffemodel or .safetensors: statistics of every "
                                        "learned blob, and whether it came from the file")
    imageset = commands.add_parser("convert-imageset", help="Caffe's convert_imageset: images "
                                   "and labels listed in LIST into an LMDB or LevelDB of Datums")
    imageset.add_argument("root", help="the folder the listed files are in (ROOT + file)")
    imageset.add_argument("listing", metavar="LIST", help="lines of `file label`")
    imageset.add_argument("db", metavar="DB", help="the database folder to create")
    imageset.add_argument("--resize_height", "--resize-height", type=int, default=0)
    imageset.add_argument("--resize_width", "--resize-width", type=int, default=0)
    imageset.add_argument("--gray", action="store_true", help="store grey images")
    imageset.add_argument("--shuffle", action="store_true", help="shuffle the lines (seeded)")
    imageset.add_argument("--seed", type=int, default=0, help="the shuffle's seed")
    imageset.add_argument("--encoded", action="store_true",
                          help="store encoded files (as they are when no resize is asked)")
    imageset.add_argument("--encode_type", "--encode-type", default="",
                          help="jpg or png (default: each file's own)")
    imageset.add_argument("--backend", choices=["lmdb", "leveldb"], default="lmdb")
    mean = commands.add_parser("compute-image-mean", help="Caffe's compute_image_mean: a "
                               "database's mean image as a .binaryproto")
    mean.add_argument("db", metavar="DB")
    mean.add_argument("output", metavar="OUT", nargs="?", help="the mean.binaryproto to write")
    mean.add_argument("--backend", choices=["lmdb", "leveldb"], default="lmdb")
    commands.add_parser("layers", help="the supported layer types")
    example = commands.add_parser("example", help="copy a flagship net out of the package "
                                  "(no NAME: list them)")
    example.add_argument("name", nargs="?", help="fcn8s, fcn16s, fcn32s, fcn8s_crfrnn, region_net")
    example.add_argument("-o", "--output", default=".", help="the folder to write NAME.prototxt in")
    _train_arguments(commands.add_parser("train", help="train with a Caffe solver.prototxt"))
    return parser


def _train_arguments(train) -> None:
    train.add_argument("solver", help="a solver.prototxt")
    train.add_argument("--nproc", type=int, default=1, metavar="N",
                       help="N processes on torch.distributed (gloo on CPU, nccl on CUDA), "
                            "each reading its share of every batch")
    train.add_argument("--data", action="append", default=[], metavar="[LAYER=]DIR",
                       help="a segmentation folder (images/ + labels/, or VOC's layout) feeding "
                            "LAYER, or the net's one unfed data layer")
    train.add_argument("--test-data", action="append", default=[], metavar="[LAYER=]DIR",
                       help="the same for the TEST nets (test_iter / test_interval)")
    train.add_argument("--split", default="train", help="the folder's list of items (SPLIT.txt)")
    train.add_argument("--test-split", default="val", help="the same for --test-data")
    train.add_argument("--mean", type=_mean, default=None, metavar="B,G,R",
                       help="subtracted from the folder's images (default: FCN's ILSVRC mean)")
    train.add_argument("--weights", help="initial weights (.caffemodel or .safetensors)")
    train.add_argument("--resume", metavar="STATE",
                       help="continue from a .solverstate.safetensors snapshot")
    train.add_argument("--device", default="cpu")
    train.add_argument("--max-iter", type=int, help="stop here instead of the solver's max_iter")
    train.add_argument("--seed", type=int, help="overrides the solver's random_seed")
    train.add_argument("--allow-python-layers", action="store_true",
                       help="import the user's Python data layers (runs their code)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--snapshot-prefix", metavar="PREFIX",
                       help="write snapshots and logs here instead of the solver's "
                            "snapshot_prefix (which, as in Caffe, is relative to the working "
                            "directory)")
    _surgery_arguments(train)


def _surgery_arguments(sub) -> None:
    surgery = sub.add_argument_group("net surgery (while binding a caffemodel)")
    surgery.add_argument("--convolutionalize", action="store_true",
                         help="pour fully connected weights into same-sized convolutions "
                              "(FCN's fc6/fc7 transplant)")
    surgery.add_argument("--expand-score", action="append", default=[], metavar="LAYER",
                         help="LAYER takes a blob with fewer outputs into its leading outputs")
    if not any(action.dest == "literal_crops" for action in sub._actions):
        sub.add_argument("--literal-crops", action="store_true",
                         help="a Crop without crop_param crops at offset 0 (BVLC) instead of "
                              "aligning")


def _surgery(args) -> dict:
    return dict(convolutionalize=args.convolutionalize, expand_score=args.expand_score,
                literal_crops=getattr(args, "literal_crops", False))


def _report_binding(module) -> None:
    """Caffe logs these quietly; a user transplanting weights wants to see them."""
    for label, names in (("kept their fillers (not in the caffemodel)",
                          getattr(module, "caffe_unfilled_layers", [])),
                         ("in the caffemodel matched no layer",
                          getattr(module, "caffe_unused_layers", []))):
        if names:
            shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
            print(f"note: {len(names)} layer(s) {label}: {shown}", file=sys.stderr)


def _net_arguments(sub) -> None:
    sub.add_argument("net", help="a .prototxt (text or binary)")
    sub.add_argument("--phase", default="TEST", type=str.upper, choices=["TRAIN", "TEST"])
    sub.add_argument("--input", action="append", type=_input_spec, default=[], metavar="NAME=N,C,H,W",
                     help="shape of an input blob the file does not fix (repeatable)")
    sub.add_argument("--literal-crops", action="store_true",
                     help="a Crop without crop_param crops at offset 0 (BVLC) instead of aligning")


def cmd_check(args) -> int:
    from .compiler.analysis import check_net, report_anyway
    from .errors import Problem

    settings = dict(phase=args.phase, inputs=dict(args.input), strict=args.strict,
                    solve_crops=not args.literal_crops)
    if args.json:
        report, errors = report_anyway(args.net, **settings)
        print(json.dumps({"net": args.net, "phase": args.phase, "ok": not errors,
                          "errors": [error.format() for error in errors],
                          "warnings": [w.format() for w in report.warnings] if report else []},
                         indent=2))
        return 1 if errors else 0
    try:
        net, problems = check_net(args.net, **settings)
    except NetdefError as exc:  # the file does not parse: nothing after that can be trusted
        if args.debug:
            raise
        net, problems = None, exc.problems or [Problem(type(exc), str(exc), args.net)]
    for problem in problems:
        print(problem.format())
    errors = sum(not p.warning for p in problems)
    if errors:
        print(f"{args.net}: {errors} error(s)", file=sys.stderr)
        return 1
    print(f"{args.net}: ok ({len(net.layers)} layers in the {args.phase} phase, "
          f"{len(problems)} warning{'' if len(problems) == 1 else 's'})")
    return 0


def cmd_info(args) -> int:
    from .compiler.analysis import analyze, report_anyway

    settings = dict(phase=args.phase, inputs=dict(args.input), solve_crops=not args.literal_crops)
    if args.json:  # JSON even from a net with errors, for scripts
        report, errors = report_anyway(args.net, **settings)
        empty = {"name": None, "inputs": {}, "blobs": [], "warnings": []}
        print(json.dumps(report.json_with(errors) if report else {**empty, "errors": [
            error.format() for error in errors]}, indent=2))
        return 1 if errors else 0
    report = analyze(args.net, partial=True, **settings)
    for warning in report.warnings:
        print(warning.format(), file=sys.stderr)
    multiple_inputs = any(len(blob.rf) > 1 for blob in report.blobs)
    rows = [("blob", "shape", "rf", "stride", "offset", "params", "FLOPs", "memory", "producer")]
    for blob in report.blobs:
        shape = "?" if blob.shape is None else "x".join(map(str, blob.shape)) or "scalar"
        settings = f": {blob.settings}" if blob.settings else ""
        producer = f"{blob.producer} ({blob.producer_type}{settings})" if blob.producer else "-"
        if blob.in_place:
            producer += " + " + ", ".join(blob.in_place)
        size, stride, offset = _rf_columns(blob.rf, multiple_inputs)
        rows.append((blob.name, shape, size, stride, offset, _amount(blob.params),
                     _amount(blob.flops), _amount(blob.bytes, "B"), producer))
    totals = report.totals()
    rows.append(("total", "", "", "", "", _amount(totals["params"]), _amount(totals["flops"]),
                 _amount(totals["bytes"], "B"), ""))
    widths = [max(len(row[i]) for row in rows) for i in range(8)]
    for row in rows:
        print(("  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths)) + "  "
               + row[8]).rstrip())
    unsized = [name for name, shape in report.inputs.items() if shape is None]
    if unsized and any(blob.shape is None for blob in report.blobs):
        sizes = " ".join(f"--input {name}=N,C,H,W" for name in unsized)
        print(f"note: '?' shapes depend on inputs the file does not size; give them with {sizes}",
              file=sys.stderr)
    return 0


def _amount(value, unit: str = "") -> str:
    """1234567 -> '1.23M': three significant digits, SI prefixes; '?' when unknown."""
    if value is None:
        return "?"
    if value == 0:
        return "-"
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{prefix}{unit}"
    return f"{value}{unit}"


def _rf_columns(rf: dict, name_inputs: bool) -> tuple[str, str, str]:
    """size, stride and offset cells: one value when h == w, else h x w; '-' without a field."""
    if not rf:
        return "-", "-", "-"
    columns = []
    for key in ("size", "stride", "offset"):
        cells = []
        for name, entry in rf.items():
            values = entry[key]
            cell = str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))
            cells.append(f"{name}:{cell}" if name_inputs else cell)
        columns.append(" ".join(cells))
    return tuple(columns)


def cmd_draw(args) -> int:
    from .compiler.analysis import partial_net
    from .compiler.draw import FORMATS, render, to_dot

    _refuse_overwriting(args.output, args.net)
    fmt = os.path.splitext(args.output)[1].lstrip(".").lower()
    if fmt not in FORMATS:
        raise UsageError(f"cannot tell the format of {args.output!r}: use one of "
                         + ", ".join(f".{f}" for f in FORMATS))
    net = partial_net(args.net, phase=args.phase, inputs=dict(args.input),
                      solve_crops=not args.literal_crops)
    for warning in net.warnings:
        print(warning.format(), file=sys.stderr)
    render(to_dot(net, args.rankdir), args.output, fmt, args.dpi)
    print(f"{args.net}: {len(net.layers)} layers drawn to {args.output}")
    return 0


def cmd_compile(args) -> int:
    from .compiler.codegen import compile_net

    _check_device(args.device)
    written = compile_net(args.net, args.output, weights=args.weights, inputs=dict(args.input),
                          phase=args.phase, fmt=args.format, on_load=_report_binding,
                          device=args.device,
                          optimize=args.phase == "TEST" and not args.no_optimize,
                          **_surgery(args))  # carries --literal-crops
    print(f"{args.net}: compiled to {args.output}/: " + ", ".join(written))
    return 0


def cmd_run(args) -> int:
    import numpy as np
    import torch

    from . import load
    from .detections import detection_blob
    from .images import is_image, write_image
    from .proposals import capture

    _refuse_overwriting(args.out, args.net, args.weights, *(path for _, path in args.input))
    _check_device(args.device)
    declared, net = _declared_inputs(args)
    feeds = {name: _read_input(name, path, args.mean, declared.get(name)) for name, path in
             args.input}

    def build():
        module = load(args.net, args.weights, phase=args.phase, device=args.device,
                      inputs={name: value.shape for name, value in feeds.items()},
                      optimize=args.phase == "TEST" and not args.no_optimize,
                      outputs=[args.out_blob] if args.out_blob else None, **_surgery(args))
        _report_binding(module)
        return module
    if not args.weights:
        print("note: no --weights: the outputs come from the prototxt's filler values "
              "(seeded), not from a trained net", file=sys.stderr)
    module = _fast_package(args, build, feeds) if args.fast else build()
    layers = module if isinstance(module, torch.nn.Module) else None  # what capture() watches
    size = next(iter(feeds.values())).shape[-2:]
    watching = capture(layers, tuple(size)) if layers is not None else contextlib.nullcontext([])
    with torch.no_grad(), watching as proposals:
        outputs = module(**{name: torch.from_numpy(value).to(args.device)
                            for name, value in feeds.items()})
    arrays = {name: value.detach().cpu().numpy() for name, value in outputs.items()}
    for name, value in arrays.items():
        print(f"{name}: {'x'.join(map(str, value.shape))}, min {value.min():.4g}, "
              f"max {value.max():.4g}")
    if proposals and is_image(args.out):
        return _draw_proposals(args, feeds, proposals[0])
    boxes = detection_blob(net, arrays)
    if boxes and (is_image(args.out) or args.out.endswith(".json")):
        return _write_detections(args, feeds, arrays[boxes])
    if not is_image(args.out):
        np.savez(args.out, **arrays)
        print(f"wrote {args.out}")
        return 0
    name = args.out_blob or next((n for n, a in arrays.items() if a.ndim == 4), None)
    if name not in arrays:
        raise UsageError(f"--out-blob: the net's outputs are {', '.join(arrays)}"
                         if args.out_blob else "no N x C x H x W output to draw; use .npz")
    try:
        drawn = write_image(args.out, arrays[name], args.mean)
    except ValueError as exc:
        raise UsageError(f"--out {args.out}: {name}: {exc}") from None
    print(f"wrote {args.out}: {name} as {drawn}")
    return 0


def _fast_package(args, build, feeds):
    """run --fast: the net's model.onnx or AOTInductor package from the cache, exported on the
    first run."""
    import time

    from .fastpath import CompiledOrAsLoaded, file_identity, packaged

    fmt = "onnx" if _fast_engine(args) == "onnxruntime" else "aoti"
    identity = {"net": file_identity(args.net), "weights": file_identity(args.weights),
                "phase": args.phase, "optimize": not args.no_optimize, "device": args.device,
                "outputs": args.out_blob, "surgery": {k: str(v) for k, v in _surgery(args).items()}}
    start = time.perf_counter()
    try:
        run, hit, path = packaged(build, {name: value.shape for name, value in feeds.items()},
                                  identity, fmt)
    except NetdefError:
        raise
    except Exception as exc:  # noqa: BLE001  an op the ONNX exporter or runtime refuses
        if fmt != "onnx":
            raise
        from .onnxengine import why
        print(f"fast: ONNX Runtime cannot run this net ({why(exc)}); compiling it with "
              "torch.compile in this process instead", file=sys.stderr)
        return CompiledOrAsLoaded(build())
    took = time.perf_counter() - start
    if run is None:
        import torch

        print(f"fast: torch {torch.__version__} cannot load the compiled package {path} (see "
              "loads.json beside it); compiling the net with torch.compile in this process "
              "instead", file=sys.stderr)
        return CompiledOrAsLoaded(build())
    made, kind = ("exported", "model") if fmt == "onnx" else ("compiled", "package")
    print(f"fast: using the {made} {kind} {path} (loaded in {took:.1f} s)" if hit else
          f"fast: {made} {path} in {took:.1f} s; later runs reuse it", file=sys.stderr)
    return run


def _fast_engine(args) -> str:
    """--engine, by default ONNX Runtime on the CPU when it is installed."""
    from .onnxengine import available

    if args.engine is None:
        return "onnxruntime" if args.device == "cpu" and available() else "inductor"
    if args.engine == "onnxruntime" and args.device != "cpu":
        raise UsageError(f"--engine onnxruntime runs on the CPU only, not --device {args.device}")
    if args.engine == "onnxruntime" and not available():
        raise UsageError("--engine onnxruntime needs onnxruntime, onnx and onnxscript "
                         "(pip install onnxruntime onnx onnxscript)")
    return args.engine


def _write_detections(args, feeds, rows) -> int:
    """A detection net's boxes: drawn on the input image, or written as JSON."""
    from .detections import detections, draw, read_labels, write_json
    from .images import as_rgb

    try:
        labels = read_labels(args.labels) if args.labels else []
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"--labels: cannot read {args.labels}: {exc}") from None
    name, image = next(iter(feeds.items()))
    found = detections(rows, image.shape[-2:], labels, args.threshold)
    if args.out.endswith(".json"):
        write_json(args.out, found)
        print(f"wrote {args.out}: {len(found)} detections scoring {args.threshold:g} or more")
        return 0
    if image.ndim != 4 or image.shape[1] != 3:
        raise UsageError(f"--out {args.out}: input '{name}' is not an image to draw on; "
                         "use FILE.json")
    draw(as_rgb(image, args.mean), found).save(args.out)
    print(f"wrote {args.out}: {len(found)} detections scoring {args.threshold:g} or more on {name}")
    return 0


def _draw_proposals(args, feeds, proposals) -> int:
    """A region net drawn: its pathways' regions in --out, the kept ones beside it."""
    from .images import as_rgb
    from .proposals import kept_picture, pathway_picture

    name = next(iter(feeds))
    image = as_rgb(feeds[name], args.mean)
    stem, extension = os.path.splitext(args.out)
    kept_path = f"{stem}-kept{extension}"
    pathway_picture(image, proposals).save(args.out)
    kept_picture(image, proposals).save(kept_path)
    print(f"wrote {args.out}: the regions of {len(proposals.logits)} pathways over {name}")
    print(f"wrote {kept_path}: the best of the {len(proposals.kept)} regions kept by NMS")
    return 0


def cmd_recall(args) -> int:
    import torch

    from . import load
    from .images import read_segments
    from .proposals import capture, evaluate

    module, shape, pairs, name = None, None, [], _first_input(args.net)
    for image_path, segments_path in args.pair:
        image = _read_input("IMAGE", image_path, args.mean)
        try:
            segments = read_segments(segments_path)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--pair: cannot read segments {segments_path}: {exc}") from None
        if segments.shape != image.shape[2:]:
            raise UsageError(f"--pair: {segments_path} is {segments.shape[1]}x"
                             f"{segments.shape[0]}, its image {image.shape[3]}x{image.shape[2]}")
        if tuple(image.shape) != shape:  # load once per image size
            shape = tuple(image.shape)
            module = load(args.net, args.weights, device=args.device,
                          inputs={name: shape})
        with torch.no_grad(), capture(module, shape[2:]) as found:
            module(**{name: torch.from_numpy(image).to(args.device)})
        if not found:
            raise UsageError(f"{args.net} has no RegionNMS layer in its TEST phase")
        pairs.append((found[0], segments))
    metrics = evaluate(pairs, ks=args.top, ignore_label=args.ignore_label)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    print(f"{metrics['segments']} ground-truth segments in {len(pairs)} image(s)")
    for name, value in metrics.items():
        if name != "segments":
            print(f"{name:>8}  {100 * value:5.1f}")
    return 0


def _first_input(net: str) -> str:
    from .compiler.analysis import analyze

    return next(iter(analyze(net).inputs))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _counts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive counts like 10,100,1000, got {text!r}")
    return values


def _declared_inputs(args) -> tuple[dict, object]:
    """The net's input shapes as the file declares them (None where it does not), and the
    checked net (run reads its layers' kinds: detections)."""
    from .compiler.analysis import check_net

    net, _ = check_net(args.net, phase=args.phase, solve_crops=not args.literal_crops)
    return {net.blobs[b].name: net.blobs[b].shape for b in net.input_blobs}, net


def _read_input(name: str, path: str, mean: tuple, declared: tuple | None = None):
    """An --input file; an image goes grey for a one-channel input, and must otherwise have
    the channels the net declares."""
    import numpy as np

    from .images import is_image, read_image

    try:
        if is_image(path):
            channels = declared[1] if declared is not None and len(declared) == 4 else None
            image = read_image(path, mean, grey=channels == 1)
            if channels not in (None, image.shape[1]):
                raise UsageError(f"--input {name}: {path} is a {image.shape[1]}-channel image, "
                                 f"but the net's input '{name}' takes {channels} channels "
                                 f"({'x'.join(map(str, declared))}); give a .npy array")
            return image
        if path.endswith(".npy"):
            return np.load(path, allow_pickle=False).astype(np.float32)
    except (OSError, ValueError) as exc:  # a file that cannot be read: exit 1, as for a net
        raise DataError(f"--input {name}: cannot read {path}: {exc}") from None
    raise UsageError(f"--input {name}: give a .npy array or an image, not {path!r}")


def _check_device(device: str) -> None:
    """A clear usage error for a device this machine does not have, before any work."""
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError) as exc:
        raise UsageError(f"--device {device}: {exc}") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: this machine has no CUDA device (torch "
                         f"{torch.__version__}); use --device cpu")


def _refuse_overwriting(output, *inputs) -> None:
    """Refuse, before writing anything, an output that is one of the inputs (convert W -o W
    would truncate the file it is still reading)."""
    if not output:
        return
    for source in inputs:
        if source and os.path.exists(source) and os.path.exists(output) and \
                os.path.samefile(source, output):
            raise UsageError(f"the output {output} is the input {source}; write elsewhere")


def _mean(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 3):
        raise argparse.ArgumentTypeError(f"expected B,G,R or one value, got {text!r}")
    return values * 3 if len(values) == 1 else values


def cmd_convert(args) -> int:
    from .compiler.bind import convert_weights

    if (args.convolutionalize or args.expand_score or args.literal_crops) and not args.net:
        raise UsageError("net surgery needs the target net: add --net NET.prototxt")
    _refuse_overwriting(args.output, args.weights, args.net)
    count, nbytes = convert_weights(args.weights, args.output, args.net, on_load=_report_binding,
                                    **_surgery(args))
    print(f"{args.weights}: {count} tensors, {nbytes / 1e6:.1f} MB written to {args.output}")
    return 0


def cmd_upgrade(args) -> int:
    from google.protobuf import text_format

    from .compiler.analysis import solve_crops
    from .compiler.parse import parse_net

    if args.solve_crops:
        parsed, changes = solve_crops(args.net)
        for change in changes:
            print(change)
    else:
        parsed = parse_net(args.net)
    _refuse_overwriting(args.output, args.net)
    if parsed.binary:
        data = parsed.net.SerializeToString()
    else:
        data = text_format.MessageToString(parsed.net).encode("utf-8")
    with open(args.output, "wb") as handle:
        handle.write(data)
    kind = "binary" if parsed.binary else "text"
    print(f"{args.net}: {parsed.original_format} -> current format, {len(parsed.net.layer)} layers, "
          f"written as {kind} to {args.output}")
    return 0


def cmd_train(args) -> int:
    from .training.train import spawn_workers, train

    if args.nproc < 1:
        raise UsageError("--nproc must be at least 1")
    _check_device(args.device)
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return spawn_workers(_without_nproc(args.argv), args.nproc)
    train(args.solver, data=_folders(args.data, args.split, args),
          test_data=_folders(args.test_data, args.test_split, args), weights=args.weights,
          resume=args.resume, device=args.device, max_iter=args.max_iter, seed=args.seed,
          allow_python_layers=args.allow_python_layers, progress=not args.no_progress,
          surgery=_surgery(args), snapshot_prefix=args.snapshot_prefix)
    return 0


def _without_nproc(argv: list[str]) -> list[str]:
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept


def _folders(entries: list[str], split: str, args) -> dict:
    from .training.data import FCN_MEAN, SegmentationFolder

    folders = {}
    for entry in entries:  # a bare DIR goes to the one data layer nothing else feeds
        layer, sep, folder = entry.rpartition("=")
        folders[layer if sep else ""] = SegmentationFolder(
            folder, split=split, mean=args.mean or FCN_MEAN, seed=args.seed or 0)
    return folders


def cmd_diff(args) -> int:
    from .diff import diff_nets

    if (args.weights_a is None) != (args.weights_b is None):
        raise UsageError("give both --weights-a and --weights-b, or neither")
    try:
        result = diff_nets(args.a, args.b, phase=args.phase, inputs=dict(args.input),
                           weights_a=args.weights_a, weights_b=args.weights_b)
    except (NetdefError, OSError) as exc:  # diff's convention: 2 when it cannot compare
        if args.debug:
            raise
        print(str(exc) if isinstance(exc, NetdefError) else f"netdef: error: {exc}",
              file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        sys.stdout.write(result.to_text())
    return 0 if result.identical else 1


def cmd_view(args) -> int:
    from .view_page import write_view

    output = args.output or os.path.splitext(os.path.basename(args.net))[0] + ".html"
    _refuse_overwriting(output, args.net, args.image, args.weights)
    written = write_view(args.net, output, phase=args.phase, inputs=dict(args.input),
                         image=args.image, weights=args.weights,
                         solve_crops=not args.literal_crops)
    for problem in written.problems:
        print(problem.format(), file=sys.stderr)
    for note in written.notes:
        print(f"note: {note}", file=sys.stderr)
    errors = sum(not problem.warning for problem in written.problems)
    listed = f", {errors} error(s) listed on it" if errors else ""
    print(f"{args.net}: wrote {output} ({written.layers} layers{listed})")
    return 1 if errors else 0


def cmd_convert_imageset(args) -> int:
    from tqdm import tqdm

    from .compiler.sidefiles import read_lines
    from .training.databases import convert_imageset

    try:
        count = len(read_lines(args.listing))
    except OSError as exc:
        raise DataError(f"{args.listing}: cannot read: {exc.strerror or exc}") from None
    with tqdm(total=count, unit="image", disable=not sys.stderr.isatty()) as bar:
        written, skipped = convert_imageset(
            args.root, args.listing, args.db, resize=(args.resize_height, args.resize_width),
            gray=args.gray, shuffle=args.shuffle, encoded=args.encoded,
            encode_type=args.encode_type, backend=args.backend, seed=args.seed,
            progress=bar.update)
    for name in skipped:
        print(f"warning: could not read {os.path.join(args.root, name)}; skipped", file=sys.stderr)
    print(f"{args.db}: {written} records ({args.backend})")
    return 0


def cmd_compute_image_mean(args) -> int:
    from .training.databases import compute_image_mean

    _refuse_overwriting(args.output, args.db)
    output = args.output or os.devnull
    mean = compute_image_mean(args.db, output, args.backend)
    print(f"number of channels: {mean.shape[0]}")
    for channel, value in enumerate(mean.mean(axis=(1, 2))):
        print(f"mean_value channel [{channel}]: {value:.6g}")
    if args.output:
        print(f"wrote {args.output}: 1x{'x'.join(map(str, mean.shape))}")
    return 0


def cmd_layers(args) -> int:
    from .compiler.layers import registry

    rules = registry()
    width = max(len(name) for name in rules)
    for name, rule in rules.items():
        print(f"{name:<{width}}  {rule.family:<9}  {rule.description}")
    return 0


def cmd_example(args) -> int:
    from . import models

    available = models.names()
    if args.name is None:
        print("\n".join(available))
        return 0
    if args.name not in available:
        raise UsageError(f"no example net {args.name!r}; they are {', '.join(available)}")
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, f"{args.name}.prototxt")
    if os.path.exists(path):
        raise UsageError(f"{path} exists; netdef does not overwrite it")
    with open(path, "w", encoding="utf-8") as out:
        out.write(models.text(args.name))
    print(f"wrote {path}")
    return 0


COMMANDS = {"check": cmd_check, "example": cmd_example, "info": cmd_info, "draw": cmd_draw, "compile": cmd_compile,
            "run": cmd_run, "recall": cmd_recall, "convert": cmd_convert, "upgrade": cmd_upgrade, "layers": cmd_layers,
            "diff": cmd_diff, "view": cmd_view,
            "convert-imageset": cmd_convert_imageset, "compute-image-mean": cmd_compute_image_mean,
            "train": cmd_train}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("NETDEF_DEBUG") == "1"
    argv = [arg for arg in argv if arg != "--debug"]  # accepted before or after the command
    try:
        args = build_parser().parse_args(argv)
        args.argv, args.debug = list(argv), debug
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"netdef: error: {exc}", file=sys.stderr)
        return 2
    except NetdefError as exc:
        if debug:
            traceback.print_exc()
        print(str(exc), file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except OSError as exc:  # unreadable input, unwritable output folder...
        if debug:
            traceback.print_exc()
        print(f"netdef: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001  a bug in netdef: one line, the traceback on demand
        if debug:
            traceback.print_exc()
        print(f"netdef: internal error: {type(exc).__name__}: {exc} (a bug in netdef; "
              "--debug shows the traceback)", file=sys.stderr)
        return 1
