"""netdef.fast: the compiled inference path computes what the eager module computes."""
from __future__ import annotations

import pytest
import torch

import netdef

NET = """
input: "data" input_shape { dim: 2 dim: 3 dim: 20 dim: 20 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 weight_filler { type: "msra" } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "score" type: "Convolution" bottom: "pool" top: "score"
  convolution_param { num_output: 4 kernel_size: 1 weight_filler { type: "xavier" } } }
layer { name: "up" type: "Deconvolution" bottom: "score" top: "up"
  convolution_param { num_output: 4 kernel_size: 4 stride: 2 bias_term: false
  weight_filler { type: "bilinear" } } }
layer { name: "crop" type: "Crop" bottom: "up" bottom: "data" top: "crop" }
layer { name: "prob" type: "Softmax" bottom: "crop" top: "prob" }
"""


@pytest.mark.slow
def test_fast_matches_eager_on_cpu():
    model = netdef.load(NET)
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        expected = model(data=x)["prob"]
    fast = netdef.fast(model)
    for _ in range(2):  # compiled once, reused
        out = fast(data=x)["prob"]
        assert out.dtype == torch.float32 and out.shape == (2, 4, 20, 20)
        assert torch.allclose(out, expected, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fast_bf16_on_cuda_is_close():
    model = netdef.load(NET, device="cuda")
    x = torch.randn(2, 3, 20, 20, device="cuda")
    with torch.no_grad():
        expected = model(data=x)["prob"]
    out = netdef.fast(model)(data=x)["prob"]
    assert out.dtype == torch.float32
    assert (out - expected).abs().max() < 2e-2  # bf16
