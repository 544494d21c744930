"""What Convolution, Deconvolution and Im2col share: parameters and the N-d shape driver."""
from __future__ import annotations

from ._base import Issue, LayerRule, ShapeIssue, canonical_axis, count, zero_fields
from ..spatial import AxisMap, map_axes
from ..window import Window, conv_window, too_small
from ..window import window_text
from ..modules import LoweringIssue, torch_nn

_P = ("convolution_param",)


class ConvolutionLike(LayerRule):
    family = "conv"
    bottoms = (1, None)
    tops = (1, None)
    tops_match_bottoms = True
    params = ("convolution_param",)
    needs_num_output = True
    torch_module = "Conv"  # Deconvolution: "ConvTranspose"

    def check_params(self, layer):
        param = layer.convolution_param
        if self.needs_num_output:
            if not param.HasField("num_output"):
                yield Issue("num_output is required", _P)
            elif param.num_output == 0:
                yield Issue("num_output must be positive, got 0", _P + ("num_output",))
            elif param.num_output % max(param.group, 1):
                yield Issue(f"num_output {param.num_output} is not divisible by group {param.group}",
                            _P + ("group",))
        yield from zero_fields(param, ("kernel_size", "kernel_h", "kernel_w", "stride", "stride_h",
                                       "stride_w", "dilation", "group"), _P)

    def top_shapes(self, layer, bottoms):
        first = bottoms[0]
        for index, shape in enumerate(bottoms[1:], start=1):
            if shape != first:
                raise ShapeIssue(f"all bottoms must share one shape; bottom {index} differs",
                                 ("bottom", index))
        param = layer.convolution_param
        axis = canonical_axis(param.axis, len(first), _P + ("axis",))
        spatial = first[axis + 1:]
        if not spatial:
            raise ShapeIssue(f"needs at least one spatial axis after axis {axis}")
        window = conv_window(param, len(spatial))
        if any(v == 0 for v in window.kernel + window.stride + window.dilation):
            return [None] * len(bottoms)  # already reported by check_params
        channels = first[axis]
        if channels % self.groups(param, channels):
            raise ShapeIssue(f"input channels {channels} are not divisible by group {param.group}",
                             _P + ("group",))
        out = tuple(self.spatial_out(axis_index, size, window)
                    for axis_index, size in enumerate(spatial))
        top = first[:axis] + (self.out_channels(param, channels, window),) + out
        return [top] * len(bottoms)

    def out_channels(self, param, channels: int, window: Window) -> int:
        return param.num_output

    def groups(self, param, channels: int) -> int:
        """The convolution's groups: the file's `group` (the depthwise forks: every channel)."""
        return max(param.group, 1)

    def learned_shapes(self, layer, bottoms):
        param = layer.convolution_param
        channels = bottoms[0][param.axis % len(bottoms[0])]
        window = conv_window(param, len(bottoms[0]) - 2)
        out = self.out_channels(param, channels, window)
        weight = self.weight_shape(channels, out, self.groups(param, channels), window.kernel)
        return [weight, (out,)][:1 + param.bias_term]

    def weight_shape(self, channels: int, out: int, groups: int, kernel: tuple) -> tuple:
        """Caffe's filter blob: out x (in / groups) x kernel (Deconvolution transposes it)."""
        return (out, channels // groups) + tuple(kernel)

    def flops(self, layer, bottoms, tops):
        """Two per multiply-add: each output value reads (in / groups) x kernel inputs."""
        weight = self.learned_shapes(layer, bottoms)[0]
        return 2 * sum(count(top) for top in tops) * count(weight, 1)

    def spatial_map(self, layer, ctx):
        param = layer.convolution_param
        if param.axis != 1:  # channels elsewhere: the spatial axes are not the image's
            return [ctx.ended()] * len(layer.top)

        def through(maps):
            window = conv_window(param, len(maps))
            return tuple(self.axis_map(m, window, axis) for axis, m in enumerate(maps))
        return [map_axes(bottom.field, through) for bottom in ctx.bottoms]

    def axis_map(self, axis_map: AxisMap, window: Window, axis: int) -> AxisMap:
        """Sliding windows; Deconvolution overrides it."""
        return axis_map.window(window.kernel[axis], window.stride[axis], window.pad[axis],
                               window.dilation[axis])

    def spatial_out(self, axis: int, size: int, window: Window) -> int:
        """Sliding windows (Convolution, Im2col); Deconvolution overrides it."""
        extent, pad = window.extent(axis), window.pad[axis]
        if size + 2 * pad < extent:
            raise too_small(axis_label(axis), size, pad, extent, _P + ("kernel_size",))
        return (size + 2 * pad - extent) // window.stride[axis] + 1

    def summary(self, layer):
        param = layer.convolution_param
        try:
            window = conv_window(param, 2)
        except ShapeIssue:
            return ""
        text = window_text(window)
        extras = [f"group {param.group}"] if param.group > 1 else []
        return ", ".join([text, *extras, str(param.num_output)] if self.needs_num_output
                         else [text, *extras])

    def lower(self, layer, ctx):
        param = layer.convolution_param
        if param.axis != 1:
            raise LoweringIssue("only channel axis 1 can run", _P + ("axis",))
        spatial = len(ctx.bottom_shapes[0]) - 2
        if spatial not in (1, 2, 3):
            raise LoweringIssue(f"{spatial}-d convolutions cannot run")
        window = conv_window(param, spatial)
        if len(ctx.bottom_shapes) > 1:
            raise LoweringIssue("several bottoms sharing one convolution cannot run yet")
        channels = ctx.bottom_shapes[0][1]
        return torch_nn(f"{self.torch_module}{spatial}d",
                        ("weight", "bias") if param.bias_term else ("weight",),
                        in_channels=channels, out_channels=self.out_channels(param, channels, window),
                        kernel_size=window.kernel, stride=window.stride, padding=window.pad,
                        dilation=window.dilation, groups=self.groups(param, channels),
                        bias=param.bias_term)

    def fillers(self, layer):
        param = layer.convolution_param
        return ((param.weight_filler, 0.0), (param.bias_filler, 0.0))[:1 + param.bias_term]


def axis_label(axis: int, num_spatial: int = 2) -> str:
    return {0: "height", 1: "width"}.get(axis, f"spatial axis {axis}") if num_spatial == 2 \
        else f"spatial axis {axis}"


class DepthwiseLike(ConvolutionLike):
    """The mobile forks' depthwise convolutions: one filter per input channel, whatever
    `group` says, stored as Caffe stores a grouped convolution's (C x 1 x kh x kw)."""

    needs_num_output = False

    def check_params(self, layer):
        yield from zero_fields(layer.convolution_param, ("kernel_size", "kernel_h", "kernel_w",
                                                         "stride", "stride_h", "stride_w",
                                                         "dilation", "num_output"), _P)

    def out_channels(self, param, channels, window):
        if param.HasField("num_output") and param.num_output != channels:
            raise ShapeIssue(f"num_output {param.num_output} differs from the input's {channels} "
                             "channels; a depthwise convolution keeps them", _P + ("num_output",))
        return channels

    def groups(self, param, channels):
        return channels

    def summary(self, layer):
        return ", ".join(filter(None, [super().summary(layer), "depthwise"]))
