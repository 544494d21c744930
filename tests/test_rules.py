"""One test per registered layer type, driven by the registry: a minimal valid layer of each
type is checked, lowered and run, and
- every top's shape from the rule's shape rule equals the shape the lowered module computes;
- where the rule keeps positions, every input pixel a top unit depends on (measured with
  autograd) lies inside the support its coordinate map states;
- every module factory the rule names resolves (compiled model.py files import them by name).
A registered type missing from LAYERS fails the test, so a new rule cannot go untested."""
from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

import netdef
from netdef.compiler.analysis import check_net
from netdef.compiler.layers import registry
from netdef.compiler.spatial import EVERYWHERE

N, C, H, W = 2, 3, 6, 6
IMAGE = (N, C, H, W)

# type -> (parameters, [bottom shape, how to fill it], tops); fills: "x" random, "labels K"
# integers below K, "index K" integers below K per item, "ones", "rois"
LAYERS = {
    "AbsVal": ("", [(IMAGE, "x")], 1),
    "AnnotatedData": ("data_param { batch_size: 2 } transform_param { resize_param { height: 8 "
                      "width: 8 } }", [], 2),
    "Accuracy": ("", [((N, 5), "x"), ((N,), "labels 5")], 1),
    "ArgMax": ("argmax_param { axis: 1 }", [(IMAGE, "x")], 1),
    "Axpy": ("", [((N, C, 1, 1), "x"), (IMAGE, "x"), (IMAGE, "x")], 1),
    "BatchNorm": ("", [(IMAGE, "x")], 1),
    "BatchReindex": ("", [(IMAGE, "x"), ((4,), "index 2")], 1),
    "Bias": ("", [(IMAGE, "x")], 1),
    "BN": ("", [(IMAGE, "x")], 1),
    "BNLL": ("", [(IMAGE, "x")], 1),
    "Clip": ("clip_param { min: -0.5 max: 0.5 }", [(IMAGE, "x")], 1),
    "Concat": ("", [(IMAGE, "x"), (IMAGE, "x")], 1),
    "ContrastiveLoss": ("", [((N, 4), "x"), ((N, 4), "x"), ((N,), "labels 2")], 1),
    "Convolution": ("convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 "
                    "weight_filler { type: 'gaussian' } }", [(IMAGE, "x")], 1),
    "ConvolutionDepthwise": ("convolution_param { num_output: 3 kernel_size: 3 stride: 2 pad: 1 "
                             "weight_filler { type: 'gaussian' } }", [(IMAGE, "x")], 1),
    "Crop": ("crop_param { axis: 2 offset: 1 }", [(IMAGE, "x"), ((N, C, 3, 4), "x")], 1),
    "Data": ("data_param { source: 'db' batch_size: 2 }", [], 2),
    "Deconvolution": ("convolution_param { num_output: 2 kernel_size: 4 stride: 2 pad: 1 "
                      "weight_filler { type: 'gaussian' } }", [(IMAGE, "x")], 1),
    "DepthwiseConvolution": ("convolution_param { kernel_size: 3 pad: 1 dilation: 2 "
                             "weight_filler { type: 'gaussian' } }", [(IMAGE, "x")], 1),
    "DetectionOutput": ("detection_output_param { num_classes: 3 code_type: CENTER_SIZE "
                        "confidence_threshold: 0.1 nms_param { nms_threshold: 0.45 top_k: 5 } }",
                        [((N, 24), "x"), ((N, 18), "x"), ((1, 2, 24), "priors")], 1),
    "DenseImageData": ("dense_image_data_param { source: 'list' batch_size: 2 }", [], 2),
    "Dropout": ("", [(IMAGE, "x")], 1),
    "DummyData": ("dummy_data_param { shape { dim: 2 dim: 3 dim: 4 dim: 5 } }", [], 1),
    "Eltwise": ("eltwise_param { operation: SUM coeff: 1 coeff: -2 }",
                [(IMAGE, "x"), (IMAGE, "x")], 1),
    "ELU": ("", [(IMAGE, "x")], 1),
    "Embed": ("embed_param { num_output: 4 input_dim: 7 weight_filler { type: 'gaussian' } }",
              [((N, 5), "labels 7")], 1),
    "EuclideanLoss": ("", [((N, 4), "x"), ((N, 4), "x")], 1),
    "Exp": ("exp_param { base: 2 scale: 0.5 shift: 0.1 }", [(IMAGE, "x")], 1),
    "Filter": ("", [(IMAGE, "x"), ((N,), "labels 2")], 1),
    "Flatten": ("", [(IMAGE, "x")], 1),
    "HDF5Data": ("hdf5_data_param { source: 'list' batch_size: 2 }", [], 2),
    "HDF5Output": ("hdf5_output_param { file_name: 'out.h5' }", [(IMAGE, "x"), ((N,), "x")], 0),
    "HingeLoss": ("", [((N, 5), "x"), ((N,), "labels 5")], 1),
    "Im2col": ("convolution_param { kernel_size: 3 stride: 1 }", [(IMAGE, "x")], 1),
    "ImageData": ("image_data_param { source: 'list' batch_size: 2 new_height: 8 new_width: 8 }",
                  [], 2),
    "ImageLabelmapData": ("image_data_param { source: 'list' batch_size: 1 }", [], 2),
    "ImageSegData": ("image_data_param { source: 'list' batch_size: 1 }", [], 2),
    "InfogainLoss": ("", [((N, 5), "x"), ((N,), "labels 5"), ((5, 5), "x")], 1),
    "InnerProduct": ("inner_product_param { num_output: 4 weight_filler { type: 'gaussian' } }",
                     [(IMAGE, "x")], 1),
    "Input": ("input_param { shape { dim: 2 dim: 3 dim: 6 dim: 6 } }", [], 1),
    "Interp": ("interp_param { zoom_factor: 2 }", [(IMAGE, "x")], 1),
    "Log": ("log_param { base: 2 shift: 2 }", [(IMAGE, "x")], 1),
    "LRN": ("lrn_param { local_size: 3 }", [(IMAGE, "x")], 1),
    "LSTM": ("recurrent_param { num_output: 4 weight_filler { type: 'gaussian' } }",
             [((3, N, 5), "x"), ((3, N), "ones")], 1),
    "LSTMUnit": ("", [((1, N, 4), "x"), ((1, N, 16), "x"), ((1, N), "ones")], 2),
    "MatWrite": ("mat_write_param { prefix: 'out' }", [(IMAGE, "x")], 0),
    "MemoryData": ("memory_data_param { batch_size: 2 channels: 3 height: 6 width: 6 }", [], 2),
    "MultinomialLogisticLoss": ("", [((N, 5), "ones"), ((N,), "labels 5")], 1),
    "MultiStageMeanfield": ("multi_stage_meanfield_param { num_iterations: 2 "
                            "compatibility_mode: POTTS theta_alpha: 5 theta_beta: 10 "
                            "theta_gamma: 3 spatial_filter_weight: 3 "
                            "bilateral_filter_weight: 5 }",
                            [(IMAGE, "x"), (IMAGE, "x"), ((N, 3, H, W), "x")], 1),
    "MultiBoxLoss": ("multibox_loss_param { num_classes: 3 }",
                     [((N, 24), "x"), ((N, 18), "x"), ((1, 2, 24), "priors"),
                      ((1, 1, 2, 8), "truth")], 1),
    "MVN": ("", [(IMAGE, "x")], 1),
    "Normalize": ("norm_param { across_spatial: false channel_shared: false "
                  "scale_filler { type: 'constant' value: 2 } }", [(IMAGE, "x")], 1),
    "PADDING": ("padding_param { pad_beg: 2 pad_end: 1 }", [(IMAGE, "x")], 1),
    "Parameter": ("parameter_param { shape { dim: 3 dim: 4 } }", [], 1),
    "ParseEvaluate": ("parse_evaluate_param { num_labels: 3 }",
                      [(IMAGE, "x"), ((N, 1, H, W), "labels 3")], 1),
    "ParseOutput": ("", [(IMAGE, "x")], 1),
    "Permute": ("permute_param { order: 0 order: 2 order: 3 order: 1 }", [(IMAGE, "x")], 1),
    "Pooling": ("pooling_param { pool: MAX kernel_size: 3 stride: 2 }", [(IMAGE, "x")], 1),
    "Power": ("power_param { power: 2 scale: 0.5 shift: 1 }", [(IMAGE, "x")], 1),
    "PReLU": ("", [(IMAGE, "x")], 1),
    "PriorBox": ("prior_box_param { min_size: 2 max_size: 4 aspect_ratio: 2 variance: 0.1 }",
                 [(IMAGE, "x"), ((N, 3, 12, 12), "x")], 1),
    "Proposal": ("proposal_param { feat_stride: 4 }",
                 [((1, 18, H, W), "x"), ((1, 36, H, W), "x"), ((1, 3), "iminfo 24")], 1),
    "PSROIPooling": ("psroi_pooling_param { output_dim: 2 group_size: 2 spatial_scale: 1 }",
                     [((N, 8, H, W), "x"), ((3, 5), "rois")], 1),
    "Python": ("python_param { module: 'user_layers' layer: 'Data' }", [], 1),
    "Reduction": ("reduction_param { operation: SUMSQ axis: 1 }", [(IMAGE, "x")], 1),
    "RegionLogisticLoss": ("region_loss_param { stride: 2 window: 2 }",
                           [((N, 4, 3, 3), "x"), ((N, 1, 6, 6), "labels 3")], 1),
    "RegionNMS": ("region_nms_param { stride: 2 window: 2 }", [((1, 4, 3, 3), "x")], 1),
    "RegionTranspose": ("region_transpose_param { window: 2 }", [((N, 4, 5, 5), "x")], 1),
    "Reorg": ("reorg_param { stride: 2 }", [((N, 4, H, W), "x")], 1),
    "ReLU": ("relu_param { negative_slope: 0.1 }", [(IMAGE, "x")], 1),
    "Reshape": ("reshape_param { shape { dim: 0 dim: -1 dim: 3 } }", [(IMAGE, "x")], 1),
    "RNN": ("recurrent_param { num_output: 4 weight_filler { type: 'gaussian' } }",
            [((3, N, 5), "x"), ((3, N), "ones")], 1),
    "ROIPooling": ("roi_pooling_param { pooled_h: 2 pooled_w: 2 spatial_scale: 1 }",
                   [(IMAGE, "x"), ((3, 5), "rois")], 1),
    "Scale": ("scale_param { bias_term: true filler { type: 'gaussian' } }", [(IMAGE, "x")], 1),
    "SegAccuracy": ("", [(IMAGE, "x"), ((N, 1, H, W), "labels 3")], 1),
    "ShuffleChannel": ("shuffle_channel_param { group: 3 }", [((N, 6, H, W), "x")], 1),
    "Sigmoid": ("", [(IMAGE, "x")], 1),
    "SigmoidCrossEntropyLoss": ("", [((N, 5), "x"), ((N, 5), "labels 2")], 1),
    "Silence": ("", [(IMAGE, "x")], 0),
    "Slice": ("slice_param { axis: 1 slice_point: 1 }", [(IMAGE, "x")], 2),
    "SmoothL1Loss": ("", [((N, 4), "x"), ((N, 4), "x"), ((N, 4), "ones")], 1),
    "Softmax": ("", [(IMAGE, "x")], 1),
    "SoftmaxWithLoss": ("", [(IMAGE, "x"), ((N, 1, H, W), "labels 3")], 1),
    "Split": ("", [(IMAGE, "x")], 2),
    "SPP": ("spp_param { pyramid_height: 2 }", [(IMAGE, "x")], 1),
    "Swish": ("swish_param { beta: 1.5 }", [(IMAGE, "x")], 1),
    "TanH": ("", [(IMAGE, "x")], 1),
    "Threshold": ("threshold_param { threshold: 0.5 }", [(IMAGE, "x")], 1),
    "Tile": ("tile_param { axis: 1 tiles: 2 }", [(IMAGE, "x")], 1),
    "UnPooling": ("unpooling_param { unpool: REP out_kernel_size: 3 out_stride: 2 out_pad: 1 }",
                  [(IMAGE, "x")], 1),
    "Upsample": ("upsample_param { scale: 2 }", [((N, C, 3, 3), "x"), ((N, C, 3, 3), "mask")], 1),
    "WindowData": ("window_data_param { source: 'windows' batch_size: 2 crop_size: 8 }", [], 2),
}
# Types netdef checks but does not run (DeepLab's and ParseNet's metrics, whose layout their
# code decides): lowering refuses them with a located LoweringError, and that is what their
# test asserts.
NOT_RUN = {"SegAccuracy", "ParseEvaluate"}


def layer_text(type_name: str) -> str:
    params, bottoms, tops = LAYERS[type_name]
    lines = [f'input: "b{i}" input_shape {{ {" ".join(f"dim: {d}" for d in shape)} }}'
             for i, (shape, _) in enumerate(bottoms)]
    wiring = " ".join([f'bottom: "b{i}"' for i in range(len(bottoms))] +
                      [f'top: "t{i}"' for i in range(tops)])
    return "\n".join(lines + [f'layer {{ name: "l" type: "{type_name}" {wiring} {params} }}'])


def feed(shape: tuple, how: str, rng) -> torch.Tensor:
    kind, _, bound = how.partition(" ")
    if kind == "x":
        return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    if kind in ("labels", "index"):
        return torch.from_numpy(rng.integers(0, int(bound), shape).astype(np.float32))
    if kind == "ones":
        return torch.ones(shape)
    if kind == "rois":  # batch index, x1, y1, x2, y2 inside the 6 x 6 image
        boxes = np.array([[0, 0, 0, 3, 3], [1, 1, 2, 5, 4], [0, 2, 1, 4, 5]], np.float32)
        return torch.from_numpy(boxes[: shape[0]])
    if kind == "priors":  # SSD's 1 x 2 x 4P: valid normalised boxes, then variances
        centres, sides = rng.uniform(0.2, 0.8, (shape[2] // 4, 2)), rng.uniform(0.1, 0.4, (shape[2] // 4, 2))
        boxes = np.concatenate([centres - sides / 2, centres + sides / 2], 1).reshape(-1)
        variances = np.tile([0.1, 0.1, 0.2, 0.2], shape[2] // 4)
        return torch.from_numpy(np.stack([boxes, variances])[None].astype(np.float32))
    if kind == "truth":  # SSD's ground-truth rows: item, label, instance, corners, difficult
        rows = np.array([[0, 1, 0, 0.2, 0.2, 0.6, 0.6, 0], [1, 2, 0, 0.3, 0.1, 0.9, 0.5, 0]])
        return torch.from_numpy(rows[: shape[2]].reshape(shape).astype(np.float32))
    if kind == "iminfo":  # height, width, scale
        return torch.tensor([[float(bound), float(bound), 1.0]])
    if kind == "mask":  # MAX pooling argmax positions in a 6 x 6 plane, one per 2 x 2 block
        cells = np.arange(shape[2])[:, None] * 2 * 6 + np.arange(shape[3])[None, :] * 2
        return torch.from_numpy(np.broadcast_to(cells, shape).astype(np.float32).copy())
    raise ValueError(how)


def test_every_registered_type_is_in_the_table():
    assert sorted(registry()) == sorted(LAYERS)


@pytest.mark.parametrize("type_name", sorted(LAYERS))
def test_rule(type_name):
    rule = registry()[type_name]
    text = layer_text(type_name)
    if rule.is_input:
        return check_input_rule(type_name, text)
    net, problems = check_net(text)
    assert not [p for p in problems if not p.warning], problems
    if type_name in NOT_RUN:
        with pytest.raises(netdef.LoweringError, match="cannot run"):
            netdef.load(text)
        return
    module = netdef.load(text)
    check_learned_shapes(net, module)
    for spec in module.caffe_specs.values():
        module_name, _, name = spec.factory.rpartition(".")
        assert hasattr(importlib.import_module(module_name), name), spec.factory
    rng = np.random.default_rng(0)
    _, bottoms, _ = LAYERS[type_name]
    feeds = {f"b{i}": feed(shape, how, rng) for i, (shape, how) in enumerate(bottoms)}
    with torch.no_grad():
        outputs = module(**feeds)
    layer = net.layers[-1]
    for blob_id in layer.tops:
        blob = net.blobs[blob_id]
        got = tuple(outputs[blob.name].shape)
        if blob.shape is None:  # a count only the data decides (RegionNMS, DetectionOutput)
            continue
        if rule.bounded_tops:  # the leading axis is an upper bound (Proposal)
            assert got[1:] == blob.shape[1:] and got[0] <= blob.shape[0], blob.name
        else:
            assert got == blob.shape, blob.name
    check_receptive_field(net, module, layer, feeds)


def check_learned_shapes(net, module) -> None:
    """The rule's learned_shapes list exactly the module's tensors, in Caffe's order, each
    with the same number of values (info's parameter counts and the size checks use them)."""
    built = {index: [getattr(module.get_submodule(target), name).numel() for name in names]
             for index, target, names in module.caffe_parameters}
    for layer in net.layers:
        bottoms = [net.blobs[b].shape for b in layer.bottoms]
        stated = [int(np.prod(shape)) for shape in layer.rule.learned_shapes(layer.param, bottoms)]
        assert stated == built.get(layer.index, []), (layer.type, stated, built.get(layer.index))


def check_input_rule(type_name: str, text: str) -> None:
    """Data layers: the graph takes one input per top, shaped as the parameters say where
    they fix it."""
    net, problems = check_net(text)
    assert not [p for p in problems if not p.warning], problems
    shapes = {net.blobs[b].name: net.blobs[b].shape for b in net.input_blobs}
    assert sorted(shapes) == [f"t{i}" for i in range(LAYERS[type_name][2])]
    known = {name: shape for name, shape in shapes.items() if shape is not None}
    given = {name: (2, 3, 4, 4) for name, shape in shapes.items() if shape is None}
    module = netdef.load(text, inputs=given, device="meta")
    placeholders = [n.target for n in module.graph.nodes if n.op == "placeholder"]
    assert placeholders == list(shapes)
    expected = {"DummyData": (2, 3, 4, 5), "Input": (2, 3, 6, 6), "MemoryData": (2, 3, 6, 6),
                "Parameter": (3, 4)}
    if expected.get(type_name):
        assert known["t0"] == expected[type_name]


def check_receptive_field(net, module, layer, feeds) -> None:
    """Each top unit's input support (nonzero gradient) lies inside its coordinate map's."""
    if not layer.tops:
        return
    top = net.blobs[layer.tops[0]]
    field = top.coords
    if field is EVERYWHERE or not field or top.shape is None or len(top.shape) != 4:
        return
    name, maps = next(iter(field.items()))
    source = feeds[name].clone().requires_grad_(True)
    output = module(**{**feeds, name: source})[top.name]
    if not output.requires_grad:  # indices or a step function: no gradient to measure
        return
    for i in range(top.shape[2]):
        for j in range(top.shape[3]):
            grad, = torch.autograd.grad(output[0, 0, i, j], source, retain_graph=True,
                                        allow_unused=True)
            if grad is None:
                continue
            rows, cols = np.nonzero(grad[0].abs().sum(0).numpy())
            for axis, (unit, found) in enumerate(((i, rows), (j, cols))):
                if not len(found):
                    continue
                span = maps[axis]._support_of(unit)
                assert span is not None and span[0] <= found.min() and found.max() <= span[1], \
                    (layer.type, axis, unit, span, found.min(), found.max())
