"""netdef: a Caffe-style declarative network compiler.

    netdef.parse(path_or_text)          -> NetParameter (upgraded to the current format)
    netdef.check(path_or_text, ...)     -> list of problems (errors and warnings)
    netdef.analyze(path_or_text, ...)   -> Report (shapes per blob); raises on errors
    netdef.load(prototxt, caffemodel)   -> torch.fx.GraphModule; module(**inputs) -> {blob: tensor}
    netdef.fast(module)                 -> the same net for fast inference
"""
from __future__ import annotations

import os
import sys

# torch's OpenMP threads spin ~300,000 turns at every barrier before they sleep. When other
# work shares the cores, a spinning thread holds a core its partner needs, and a 2-thread
# forward slows down 5-6x (OpenCV's pool: under 3x); 10,000 turns keep the quiet speed and
# halve the busy slowdown. Longer spins gain a little quiet speed within the noise, but at
# 100,000 every forward ends with ~4 ms of a core spent spinning, taken from whatever else
# runs (docs/benchmarks.md, "the spin count again"). libgomp reads the setting when torch
# loads, so it applies when netdef is imported first (the CLI is), and never overrides the
# user's.
if "torch" not in sys.modules:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from .errors import (  # noqa: E402
    AlignmentError,
    DataError,
    GraphError,
    LoweringError,
    NetdefError,
    ParameterError,
    Problem,
    PrototxtSyntaxError,
    SchemaError,
    ShapeError,
    SolverError,
    UnknownField,
    UnknownLayerType,
    UsageError,
    WeightError,
)

__version__ = "0.1.0"


def parse(source, *, strict: bool = False):
    """Parse a prototxt (path, text or binary bytes) and upgrade it to the current format."""
    from .compiler.parse import parse_net

    return parse_net(source, strict=strict).net


def check(source, *, phase: str = "TEST", inputs=None, strict: bool = False) -> list[Problem]:
    """Every problem in a net, errors and warnings, in line order (syntax errors raise)."""
    from .compiler.analysis import check_net

    return check_net(source, phase=phase, inputs=inputs, strict=strict)[1]


def analyze(source, inputs=None, *, phase: str = "TEST", strict: bool = False):
    """Shapes of every blob; raises the net's errors as one NetdefError."""
    from .compiler.analysis import analyze as _analyze

    return _analyze(source, phase=phase, inputs=inputs, strict=strict)


def load(prototxt, weights=None, *, phase: str = "TEST", inputs=None, device="cpu", dtype=None,
         allow_python_layers: bool = False, seed: int = 0, convolutionalize: bool = False,
         expand_score=(), literal_crops: bool = False, optimize: bool = False, outputs=None):
    """The net as a torch.fx.GraphModule; `forward(**inputs)` returns {blob name: tensor}
    for the net's outputs. Weights come from a .caffemodel when given; `device="meta"`
    builds the structure alone. Weights also come from a .safetensors file keyed `layer.blob`
    (`netdef convert`, training snapshots) or `module.tensor` (`netdef compile`, `convert
    --net`). Parameters the file lacks keep the prototxt's fillers (seeded);
    `module.caffe_unfilled_layers` names those layers and
    `module.caffe_unused_layers` the caffemodel's layers that matched none. The module is
    in eval mode for TEST, train mode for TRAIN.

    Net surgery while binding: `convolutionalize` reshapes fully connected weights into
    convolutions of the same size; `expand_score` names layers that take a caffemodel
    blob with fewer outputs into their leading outputs.

    Crop offsets written in crop_param are used as written; a Crop without crop_param gets
    the offsets that align its bottoms, or BVLC's zeros with `literal_crops=True`.

    `optimize=True` (TEST phase) folds BatchNorm, Scale and Bias chains into the convolution
    or inner product before them (one fused affine op elsewhere), drops Dropout and Split,
    fuses each convolution with the ReLU after it and keeps oneDNN's packed copies of the
    convolution weights (one per input shape and thread count in use, in memory beside them):
    the same numbers up to float rounding, less work per forward. The default module is the
    faithful one, layer for layer, as training and weight export need it.

    `outputs` names the blobs forward returns, internal ones included (a name rewritten in
    place means its last version); by default the net's outputs, the tops no layer reads
    but a Silence. Inputs a layer reads as image information (Faster R-CNN's `im_info`:
    height, width, scale) may be left out: they default to the image's size at scale 1.

    On the CPU, eval-mode forwards that run far slower than their best (another process holds
    the cores) are timed against one thread, and the faster count is used while it stays
    faster (netdef/runtime/threads.py); the caller's thread count is restored after each."""
    from .compiler.analysis import checked_net
    from .compiler.bind import build_module

    net = checked_net(prototxt, phase=phase, inputs=inputs, solve_crops=not literal_crops)
    module = build_module(net, weights, device=device, dtype=dtype, seed=seed,
                          convolutionalize=convolutionalize, expand_score=expand_score,
                          optimize=optimize, outputs=outputs)
    if str(device) == "cpu":
        from .runtime.threads import ThreadChooser
        module.caffe_thread_chooser = ThreadChooser()
    return module


def fast(module, *, bf16=None, engine=None):
    """An inference-only version of a loaded net: ONNX Runtime on the CPU, torch.compile
    otherwise or with engine="inductor" (see netdef/fastpath.py)."""
    from .fastpath import fast as _fast

    return _fast(module, bf16=bf16, engine=engine)


__all__ = [
    "load", "fast",
    "parse", "check", "analyze", "NetdefError", "PrototxtSyntaxError", "SchemaError",
    "UnknownLayerType", "UnknownField", "ParameterError", "GraphError", "ShapeError",
    "AlignmentError", "LoweringError", "WeightError", "SolverError", "DataError", "UsageError", "Problem",
]
