"""Caffe's `MultiStageMeanfield` layer (dialect (CRF-RNN): T mean-field iterations of a dense CRF
with Gaussian kernels).

Runs as `netdef.runtime.crf.MultiStageMeanfield` or `netdef.runtime.crf.LearnedKernelMeanfield`.
Tested by `tests/test_rules.py` (test_rule[MultiStageMeanfield]), and in `tests/test_cli.py`,
`tests/test_crf.py`, `tests/test_crf_learned.py`.
"""
from __future__ import annotations

from netdef.errors import ParameterError

from ._base import Issue, LayerRule, ShapeIssue, fmt, register
from ..modules import ModuleSpec

_P = ("multi_stage_meanfield_param",)


@register
class MultiStageMeanfield(LayerRule):
    """CRF-RNN: bottoms are the unary logits, the first iteration's logits and the image."""

    description = "dialect (CRF-RNN): T mean-field iterations of a dense CRF with Gaussian kernels"
    family = "crf"
    bottoms = (3, 3)
    params = ("multi_stage_meanfield_param",)

    def check_params(self, layer):
        param = layer.multi_stage_meanfield_param
        if param.num_iterations <= 1:
            yield Issue(f"num_iterations is {param.num_iterations}; the CRF-RNN code requires more "
                        "than 1 (its default 1 aborts)", _P + ("num_iterations",), warning=True)
        for name in ("theta_alpha", "theta_beta", "theta_gamma"):
            if getattr(param, name) <= 0:
                yield Issue(f"{name} must be positive", _P + (name,))
        if param.parameterization == param.LEARNED_KERNELS:
            for name in ("spatial_filter_weights_str", "bilateral_filter_weights_str"):
                if getattr(param, name):
                    yield Issue(f"{name} is ignored with parameterization LEARNED_KERNELS, "
                                "which learns one spatial and one bilateral weight",
                                _P + (name,), warning=True)

    def top_shapes(self, layer, bottoms):
        unary, first, image = bottoms
        if len(unary) != 4:
            raise ShapeIssue(f"unary must be N x C x H x W, got {fmt(unary)}", ("bottom", 0))
        if first != unary:
            raise ShapeIssue(f"bottom 1 ({fmt(first)}) must have the unary's shape ({fmt(unary)})",
                             ("bottom", 1))
        if len(image) != 4 or image[0] != unary[0] or image[2:] != unary[2:] or image[1] != 3:
            raise ShapeIssue(f"the image (bottom 2, {fmt(image)}) must be N x 3 x H x W with the "
                             f"unary's N, H, W ({fmt(unary)})", ("bottom", 2))
        classes = unary[1]
        for name in ("spatial_filter_weights_str", "bilateral_filter_weights_str"):
            text = getattr(layer.multi_stage_meanfield_param, name)
            if text and len(_numbers(text, name)) != classes:
                raise ShapeIssue(f"{name} holds {len(_numbers(text, name))} numbers; the unary "
                                 f"has {classes} classes", _P + (name,), kind=ParameterError)
        return [unary]

    def learned_shapes(self, layer, bottoms):
        param = layer.multi_stage_meanfield_param
        if param.parameterization == param.LEARNED_KERNELS:
            return [(2,), (2,), (5,)]  # weights, spatial widths (x, y), bilateral (x, y, colours)
        classes = bottoms[0][1]
        return [(classes, classes)] * 3  # spatial weight, bilateral weight, compatibility

    def lower(self, layer, ctx):
        param = layer.multi_stage_meanfield_param
        if param.parameterization == param.LEARNED_KERNELS:
            return _learned_kernels(param)
        return _caffe(param, ctx.bottom_shapes[0][1])

    def summary(self, layer):
        param = layer.multi_stage_meanfield_param
        return (f"T={param.num_iterations} alpha={param.theta_alpha:g} "
                f"beta={param.theta_beta:g} gamma={param.theta_gamma:g}")

    def spatial_map(self, layer, ctx):
        ctx.merged()  # unaries, logits and image must sit on the same pixels
        return [ctx.ended()]  # the CRF is fully connected: every pixel reads every other


def _caffe(param, classes: int) -> ModuleSpec:
    """Ws and Wb start diagonal (the *_weights_str numbers, else the scalar weights),
    Mu = -I: the intended initialisation, which a caffemodel's three blobs replace."""
    diagonals = {}
    for kind in ("spatial", "bilateral"):
        text = getattr(param, f"{kind}_filter_weights_str")
        diagonals[kind] = (_numbers(text, kind) if text
                           else [getattr(param, f"{kind}_filter_weight")] * classes)
    return ModuleSpec("netdef.runtime.crf.MultiStageMeanfield", dict(
        classes=classes, iterations=param.num_iterations, theta_alpha=param.theta_alpha,
        theta_beta=param.theta_beta, theta_gamma=param.theta_gamma,
        spatial_weights=diagonals["spatial"], bilateral_weights=diagonals["bilateral"]),
        ("spatial_weight", "bilateral_weight", "compatibility"))


def _learned_kernels(param) -> ModuleSpec:
    """Schwing & Urtasun: the widths start at the thetas (x, y; x, y, three colours)."""
    return ModuleSpec("netdef.runtime.crf.LearnedKernelMeanfield", dict(
        iterations=param.num_iterations,
        weights=[param.spatial_filter_weight, param.bilateral_filter_weight],
        spatial_widths=[param.theta_gamma] * 2,
        bilateral_widths=[param.theta_alpha] * 2 + [param.theta_beta] * 3),
        ("weights", "spatial_width", "bilateral_width"))


def _numbers(text: str, name: str) -> list[float]:
    try:
        return [float(word) for word in text.split()]
    except ValueError:
        raise ShapeIssue(f"{name}: expected space-separated numbers, got {text!r}",
                         _P + (name,), kind=ParameterError) from None
