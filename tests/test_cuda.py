"""The same module on CUDA (runs where a GPU is present; skipped elsewhere)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import netdef

from .test_compile import zoo  # noqa: F401  (fixture)
from .test_train import workdir  # noqa: F401  (fixture)
from .conftest import ROOT
from .test_layer_zoo import ZOO

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_layer_zoo_on_cuda_matches_cpu(zoo):  # noqa: F811
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 4, 9, 11)).astype(np.float32))
    with torch.no_grad():
        cpu = netdef.load(ZOO, zoo)(data=x)
        gpu = netdef.load(ZOO, zoo, device="cuda")(data=x.cuda())
    for name, value in cpu.items():
        assert gpu[name].device.type == "cuda"
        assert torch.allclose(gpu[name].cpu(), value, rtol=1e-3, atol=1e-4), name


@cuda
def test_fcn8s_on_cuda():
    model = netdef.load(ROOT / "models" / "fcn8s.prototxt", device="cuda")
    with torch.no_grad():
        out = model(data=torch.randn(1, 3, 500, 500, device="cuda"))["score"]
    assert out.shape == (1, 21, 500, 500) and out.is_cuda


@cuda
def test_crf_lattice_on_cuda_matches_cpu_with_gradients():
    from .test_crf import CRF_NET
    text = CRF_NET.format(c=3, extra="")
    generator = torch.Generator().manual_seed(0)
    feeds = dict(unary=torch.randn(2, 3, 20, 24, generator=generator),
                 q0=torch.randn(2, 3, 20, 24, generator=generator),
                 image=torch.rand(2, 3, 20, 24, generator=generator) * 255)
    outputs, grads = {}, {}
    for device in ("cpu", "cuda"):
        model = netdef.load(text, device=device)
        out = model(**{k: v.to(device) for k, v in feeds.items()})["pred"]
        out.square().sum().backward()
        outputs[device] = out.detach().cpu()
        grads[device] = model.get_submodule("inference1").compatibility.grad.cpu()
    assert torch.allclose(outputs["cuda"], outputs["cpu"], rtol=1e-4, atol=1e-4)
    assert torch.allclose(grads["cuda"], grads["cpu"], rtol=1e-3, atol=1e-3)


@cuda
def test_full_width_region_net_learns_on_cuda():
    """tests/test_region_learning.py's check on the full-width VGG-16 region net."""
    from .test_region_learning import assert_learns, region_net_text, synthetic_scene, train

    torch.manual_seed(0)
    data, segments = synthetic_scene(64, 96)
    module = netdef.load(region_net_text((1, 3, 64, 96), narrowing=1), phase="TRAIN",
                         device="cuda")
    assert_learns(*train(module, data.cuda(), segments.cuda()))


@cuda
def test_region_nms_takes_cuda_inputs():
    """NMS runs on the CPU whatever the device; CUDA logits give the same regions, on CUDA."""
    from netdef.runtime.regions import RegionNMS

    torch.manual_seed(0)
    logits = [torch.randn(2, w * w, 24 // s, 32 // s) * 2 for s, w in ((2, 4), (4, 4))]
    nms = RegionNMS([2, 4], [4, 4], 0.5)
    on_cpu, on_cuda = nms(*logits), nms(*[q.cuda() for q in logits])
    assert on_cuda.is_cuda and len(on_cpu) > 10
    assert torch.equal(on_cpu, on_cuda.cpu())


@cuda
def test_training_on_cuda_follows_cpu(workdir):  # noqa: F811
    from netdef.training.train import train

    solver = 'net: "net4.prototxt"\nbase_lr: 0.05\nlr_policy: "fixed"\nmomentum: 0.9\nmax_iter: 5\n'
    cpu = train(solver, log=False).module
    gpu = train(solver, device="cuda", log=False).module
    assert gpu.ip.weight.is_cuda
    torch.testing.assert_close(gpu.ip.weight.cpu(), cpu.ip.weight, rtol=1e-3, atol=1e-4)


TINY = ('input: "data" input_shape { dim: 1 dim: 3 dim: 16 dim: 16 }\n'
        'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { '
        'num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.3 } '
        'bias_filler { type: "gaussian" } } }\n'
        'layer { name: "bn" type: "BatchNorm" bottom: "c" top: "c" }\n'
        'layer { name: "r" type: "ReLU" bottom: "c" top: "c" }\n')


@cuda
@pytest.mark.slow
def test_run_fast_on_cuda_matches_eager(tmp_path, monkeypatch, cli):
    """run --fast --device cuda: the package's kernels are compiled for the GPU (its example
    inputs live where the weights do) and give the CPU module's numbers."""
    monkeypatch.setenv("NETDEF_CACHE", str(tmp_path / "cache"))
    net = tmp_path / "tiny.prototxt"
    net.write_text(TINY)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((1, 3, 16, 16), np.float32))
    common = ["run", net, "--input", f"data={tmp_path / 'x.npy'}"]
    code, _, err = cli(*common, "--fast", "--device", "cuda", "--out", tmp_path / "fast.npz")
    # a torch whose loader cannot take the package (2.11 on an H200) runs torch.compile instead
    assert code == 0 and ("fast: compiled" in err or "cannot load the compiled package" in err)
    assert cli(*common, "--out", tmp_path / "cpu.npz")[0] == 0
    assert np.allclose(np.load(tmp_path / "fast.npz")["c"], np.load(tmp_path / "cpu.npz")["c"],
                       rtol=2e-3, atol=2e-3)  # cuDNN's TF32


@cuda
@pytest.mark.slow
def test_compile_aoti_for_cuda_serves_any_batch(tmp_path, cli):
    from netdef.fastpath import load_package, package_loads

    net = tmp_path / "tiny.prototxt"
    net.write_text(TINY)
    code, _, err = cli("compile", net, "--format", "aoti", "--device", "cuda",
                       "-o", tmp_path / "out")
    assert code == 0, err
    package = tmp_path / "out" / "model_aoti.pt2"
    if not package_loads(package):  # tried in a child process: torch 2.11's loader crashed
        pytest.xfail(f"torch {torch.__version__} cannot load a CUDA AOTInductor package: "
                     + (tmp_path / "out" / "loads.json").read_text()[-400:])
    run = load_package(package)
    eager = netdef.load(net)
    for batch in (1, 3):
        x = torch.rand(batch, 3, 16, 16)
        out = run(data=x.cuda())["c"]
        assert out.is_cuda and out.shape == (batch, 4, 14, 14)
        with torch.no_grad():
            torch.testing.assert_close(out.cpu(), eager(data=x)["c"], rtol=2e-3, atol=2e-3)


@cuda
def test_optimized_bf16_module_replays_as_a_cuda_graph():
    """The optimized module has no host synchronisation: it captures as a CUDA graph (as
    bench/bench_cuda.py times it), and the replay follows new inputs."""
    model = netdef.load(ROOT / "models" / "fcn8s.prototxt", device="cuda", dtype=torch.bfloat16,
                        optimize=True, inputs={"data": (1, 3, 64, 64)})
    with torch.no_grad():  # the flagship's score layers start at zero: no test on zeros
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) / parameter[0].numel() ** 0.5)
    static = torch.zeros(1, 3, 64, 64, device="cuda", dtype=torch.bfloat16)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.no_grad():
        model(data=static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        captured = model(data=static)["score"]
    x = 50 * torch.randn(1, 3, 64, 64, device="cuda", dtype=torch.bfloat16)
    static.copy_(x)
    graph.replay()
    with torch.no_grad():
        expected = model(data=x)["score"]
    assert float((captured - expected).float().norm() / expected.float().norm()) < 1e-2
