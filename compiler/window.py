"""Kernel, stride, pad and dilation: Caffe's repeated and _h/_w forms, read once.

Convolution-like layers (Convolution, Deconvolution, Im2col) keep repeated
fields for N-d; Pooling keeps scalar fields plus _h/_w. Both end up as a
`Window` with one value per spatial axis, used by every pass.
"""
from __future__ import annotations

from dataclasses import dataclass

from netdef.errors import ParameterError

from .layers._base import ShapeIssue


@dataclass(frozen=True)
class Window:
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    dilation: tuple[int, ...]

    def extent(self, axis: int) -> int:
        """Input span of one kernel application, dilation included."""
        return self.dilation[axis] * (self.kernel[axis] - 1) + 1


def _per_axis(param, name: str, default: int | None, num_spatial: int, field_prefix) -> tuple:
    """Expand a repeated field or its _h/_w pair to one value per spatial axis."""
    values = list(getattr(param, name))
    has_hw = param.HasField(f"{name}_h") or param.HasField(f"{name}_w")
    if has_hw:
        if num_spatial != 2:
            raise ShapeIssue(f"{name}_h/{name}_w only apply to 2-D data", field_prefix + (f"{name}_h",))
        if values:
            raise ShapeIssue(f"give either {name} or {name}_h/{name}_w, not both",
                             field_prefix + (name, 0))
        if not (param.HasField(f"{name}_h") and param.HasField(f"{name}_w")) and default is None:
            raise ShapeIssue(f"both {name}_h and {name}_w are required", field_prefix + (f"{name}_h",))
        return getattr(param, f"{name}_h"), getattr(param, f"{name}_w")
    if not values:
        if default is None:
            raise ShapeIssue(f"{name} is required", field_prefix)
        return (default,) * num_spatial
    if len(values) not in (1, num_spatial):
        raise ShapeIssue(f"{name} has {len(values)} values; give 1 or one per spatial axis "
                         f"({num_spatial})", field_prefix + (name, 0))
    return tuple(values) * num_spatial if len(values) == 1 else tuple(values)


# Caffe's convolution stores kernel_size, stride, pad, dilation in repeated
# fields, with the key "kernel" mapping to the field name "kernel_size".
def conv_window(param, num_spatial: int) -> Window:
    prefix = ("convolution_param",)
    kernel = _conv_kernel(param, num_spatial, prefix)
    stride = _per_axis(param, "stride", 1, num_spatial, prefix)
    pad = _per_axis(param, "pad", 0, num_spatial, prefix)
    dilation = _dilation(param, num_spatial, prefix)
    return Window(tuple(kernel), tuple(stride), tuple(pad), tuple(dilation))


def _conv_kernel(param, num_spatial, prefix):
    sizes = list(param.kernel_size)
    has_hw = param.HasField("kernel_h") or param.HasField("kernel_w")
    if has_hw:
        if sizes:
            raise ShapeIssue("give either kernel_size or kernel_h/kernel_w, not both",
                             prefix + ("kernel_size", 0))
        if not (param.HasField("kernel_h") and param.HasField("kernel_w")):
            raise ShapeIssue("both kernel_h and kernel_w are required", prefix + ("kernel_h",))
        if num_spatial != 2:
            raise ShapeIssue("kernel_h/kernel_w only apply to 2-D data", prefix + ("kernel_h",))
        return param.kernel_h, param.kernel_w
    if not sizes:
        raise ShapeIssue("kernel_size (or kernel_h and kernel_w) is required", prefix,
                         kind=ParameterError)
    if len(sizes) not in (1, num_spatial):
        raise ShapeIssue(f"kernel_size has {len(sizes)} values; give 1 or one per spatial axis "
                         f"({num_spatial})", prefix + ("kernel_size", 0))
    return tuple(sizes) * num_spatial if len(sizes) == 1 else tuple(sizes)


def _dilation(param, num_spatial, prefix):
    values = list(param.dilation)
    hole = param.hole if param.hole != 1 else param.filter_stride  # ParseNet's name for it
    if hole != 1 or param.hole_h != 1 or param.hole_w != 1:  # DeepLab v1's name for it
        if values:
            raise ShapeIssue("give either dilation or hole, not both", prefix + ("hole",))
        if param.hole != 1 and param.filter_stride != 1:
            raise ShapeIssue("give either hole or filter_stride, not both", prefix + ("hole",))
        if param.HasField("hole_h") or param.HasField("hole_w"):
            return param.hole_h, param.hole_w
        return (hole,) * num_spatial
    if not values:
        return (1,) * num_spatial
    if len(values) not in (1, num_spatial):
        raise ShapeIssue(f"dilation has {len(values)} values; give 1 or one per spatial axis",
                         prefix + ("dilation", 0))
    return tuple(values) * num_spatial if len(values) == 1 else tuple(values)


def pool_window(param, spatial: tuple[int, ...]) -> Window:
    """Pooling's window over a 2-D input of size `spatial` (global pooling needs it)."""
    prefix = ("pooling_param",)
    if param.HasField("bin_size"):  # ParseNet: bin_size x bin_size cells, sized as SPP's levels
        if param.HasField("kernel_size") or param.HasField("kernel_h") or param.global_pooling:
            raise ShapeIssue("bin_size sets the kernel; remove kernel_size and global_pooling",
                             prefix + ("bin_size",))
        bins = max(param.bin_size, 1)
        kernel = tuple(-(-n // bins) for n in spatial)
        return Window(kernel, kernel, tuple((k * bins - n + 1) // 2
                                            for k, n in zip(kernel, spatial)), (1, 1))
    if param.global_pooling:
        if param.HasField("kernel_size") or param.HasField("kernel_h") or param.HasField("kernel_w"):
            raise ShapeIssue("global_pooling sets the kernel; remove kernel_size",
                             prefix + ("kernel_size",))
        kernel = tuple(spatial)
    else:
        kernel = _scalar_pair(param, "kernel", "kernel_size", None, prefix)
    stride = _scalar_pair(param, "stride", "stride", 1, prefix)
    pad = _scalar_pair(param, "pad", "pad", 0, prefix)
    return Window(kernel, stride, pad, (1, 1))


def _scalar_pair(param, stem: str, single: str, default, prefix) -> tuple[int, int]:
    has_h, has_w = param.HasField(f"{stem}_h"), param.HasField(f"{stem}_w")
    if has_h or has_w:
        if param.HasField(single):
            raise ShapeIssue(f"give either {single} or {stem}_h/{stem}_w, not both",
                             prefix + (single,))
        if not (has_h and has_w):
            raise ShapeIssue(f"both {stem}_h and {stem}_w are required", prefix + (f"{stem}_h",))
        return getattr(param, f"{stem}_h"), getattr(param, f"{stem}_w")
    if param.HasField(single) or default is not None:
        value = getattr(param, single) if param.HasField(single) else default
        return value, value
    raise ShapeIssue(f"{single} (or {stem}_h and {stem}_w) is required", prefix, kind=ParameterError)

def too_small(axis_name: str, size: int, pad: int, extent: int, field) -> ShapeIssue:
    return ShapeIssue(f"kernel extent {extent} is larger than the padded input along {axis_name} "
                      f"({size} + 2*{pad} = {size + 2 * pad})", field)


def window_text(window: Window) -> str:
    """'3x3 /2 pad 1 dil 2', leaving out defaults and repeating nothing that is square."""
    def square(values):
        return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))
    text = "x".join(map(str, window.kernel))
    if any(s != 1 for s in window.stride):
        text += f" /{square(window.stride)}"
    if any(window.pad):
        text += f" pad {square(window.pad)}"
    if any(d != 1 for d in window.dilation):
        text += f" dil {square(window.dilation)}"
    return text
