"""Caffe's `Deconvolution` layer (transposed convolution (learned or bilinear upsampling); weights
C_in x C_out/g).

Runs as `torch.nn.ConvTranspose2d`. Tested by `tests/test_rules.py` (test_rule[Deconvolution]),
and in `tests/compiler/layers/test_shape_rules.py`, `tests/compiler/test_receptive.py`,
`tests/compiler/test_receptive_oracle.py`.
"""
from __future__ import annotations

from ._base import ShapeIssue, count, register
from ._convolution import ConvolutionLike, axis_label


@register
class Deconvolution(ConvolutionLike):
    description = "transposed convolution (learned or bilinear upsampling); weights C_in x C_out/g"
    torch_module = "ConvTranspose"  # same weight layout as Caffe: C_in x C_out/g x k x k

    def axis_map(self, axis_map, window, axis):
        return axis_map.transposed_window(window.kernel[axis], window.stride[axis],
                                          window.pad[axis], window.dilation[axis])

    def weight_shape(self, channels, out, groups, kernel):
        return (channels, out // groups) + tuple(kernel)

    def flops(self, layer, bottoms, tops):
        """Two per multiply-add: each input value is spread over (out / groups) x kernel."""
        weight = self.learned_shapes(layer, bottoms)[0]
        return 2 * sum(count(bottom) for bottom in bottoms) * count(weight, 1)

    def spatial_out(self, axis, size, window):
        out = window.stride[axis] * (size - 1) + window.extent(axis) - 2 * window.pad[axis]
        if out <= 0:
            raise ShapeIssue(f"output {axis_label(axis)} would be {out}: pad {window.pad[axis]} is "
                             "too large for this kernel and input", ("convolution_param", "pad"))
        return out
