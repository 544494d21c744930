"""A MobileNet-SSD deploy prototxt in the layout of chuanqi305's MobileNet-SSD (VOC, 300 x 300):
MobileNet v1 with BatchNorm + Scale after every convolution, four extra stride-2 blocks, and
six SSD heads. Depthwise layers alternate between a grouped `Convolution` (as the original
file writes them) and the ShuffleNet fork's `ConvolutionDepthwise`, so both forms are run."""
from __future__ import annotations

CLASSES = 21
# (name, kind, outputs, stride): "dw" depthwise 3x3, "pw" 1x1, "full" 3x3
TRUNK = [("conv0", "full", 32, 2)]
for index, (channels, stride) in enumerate([(64, 1), (128, 2), (128, 1), (256, 2), (256, 1),
                                            (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
                                            (512, 1), (1024, 2), (1024, 1)], start=1):
    TRUNK += [(f"conv{index}/dw", "dw", None, stride), (f"conv{index}", "pw", channels, 1)]
for index, (squeeze, channels) in enumerate([(256, 512), (128, 256), (128, 256), (64, 128)],
                                            start=14):
    TRUNK += [(f"conv{index}_1", "pw", squeeze, 1), (f"conv{index}_2", "full", channels, 2)]
# head blob, min size, max size, aspect ratios
HEADS = [("conv11", 60, None, (2,)), ("conv13", 105, 150, (2, 3)), ("conv14_2", 150, 195, (2, 3)),
         ("conv15_2", 195, 240, (2, 3)), ("conv16_2", 240, 285, (2, 3)),
         ("conv17_2", 285, 300, (2, 3))]


def conv(name, bottom, outputs, kernel, stride, pad, group=None, kind="Convolution", bias=True):
    group_text = f" group: {group}" if group else ""
    return (f'layer {{ name: "{name}" type: "{kind}" bottom: "{bottom}" top: "{name}"\n'
            f'  convolution_param {{ num_output: {outputs} kernel_size: {kernel} stride: {stride} '
            f'pad: {pad}{group_text} bias_term: {"true" if bias else "false"} }} }}\n')


def bn_relu(name):
    return (f'layer {{ name: "{name}/bn" type: "BatchNorm" bottom: "{name}" top: "{name}" }}\n'
            f'layer {{ name: "{name}/scale" type: "Scale" bottom: "{name}" top: "{name}"\n'
            f'  scale_param {{ bias_term: true }} }}\n'
            f'layer {{ name: "{name}/relu" type: "ReLU" bottom: "{name}" top: "{name}" }}\n')


def head(blob, min_size, max_size, ratios):
    priors = 1 + (1 if max_size else 0) + 2 * len(ratios)
    ratio_text = " ".join(f"aspect_ratio: {r}" for r in ratios)
    max_text = f" max_size: {max_size}" if max_size else ""
    text = ""
    for part, width in (("loc", 4), ("conf", CLASSES)):
        name = f"{blob}_mbox_{part}"
        text += conv(name, blob, priors * width, 1, 1, 0)
        text += (f'layer {{ name: "{name}_perm" type: "Permute" bottom: "{name}" '
                 f'top: "{name}_perm" permute_param {{ order: 0 order: 2 order: 3 order: 1 }} }}\n'
                 f'layer {{ name: "{name}_flat" type: "Flatten" bottom: "{name}_perm" '
                 f'top: "{name}_flat" flatten_param {{ axis: 1 }} }}\n')
    text += (f'layer {{ name: "{blob}_mbox_priorbox" type: "PriorBox" bottom: "{blob}" '
             f'bottom: "data" top: "{blob}_mbox_priorbox"\n  prior_box_param {{ '
             f'min_size: {min_size}{max_text} {ratio_text} flip: true clip: false '
             f'variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 offset: 0.5 }} }}\n')
    return text


def mobilenet_ssd() -> str:
    text = 'name: "MobileNet-SSD"\ninput: "data" input_shape { dim: 1 dim: 3 dim: 300 dim: 300 }\n'
    bottom, channels = "data", 3
    for position, (name, kind, outputs, stride) in enumerate(TRUNK):
        if kind == "dw":
            form = "ConvolutionDepthwise" if position % 4 == 1 else "Convolution"
            text += conv(name, bottom, channels, 3, stride, 1, None if form != "Convolution"
                         else channels, kind=form, bias=False)
        else:
            kernel = 3 if kind == "full" else 1
            text += conv(name, bottom, outputs, kernel, stride, kernel // 2, bias=False)
            channels = outputs
        text += bn_relu(name)
        bottom = name
    for spec in HEADS:
        text += head(*spec)
    for part, axis in (("loc", 1), ("conf", 1), ("priorbox", 2)):
        suffix = "" if part == "priorbox" else "_flat"
        bottoms = " ".join(f'bottom: "{blob}_mbox_{part}{suffix}"' for blob, *_ in HEADS)
        text += (f'layer {{ name: "mbox_{part}" type: "Concat" {bottoms} top: "mbox_{part}" '
                 f'concat_param {{ axis: {axis} }} }}\n')
    text += (f'layer {{ name: "mbox_conf_reshape" type: "Reshape" bottom: "mbox_conf" '
             f'top: "mbox_conf_reshape" reshape_param {{ shape {{ dim: 0 dim: -1 dim: {CLASSES} '
             f'}} }} }}\n'
             'layer { name: "mbox_conf_softmax" type: "Softmax" bottom: "mbox_conf_reshape" '
             'top: "mbox_conf_softmax" softmax_param { axis: 2 } }\n'
             'layer { name: "mbox_conf_flatten" type: "Flatten" bottom: "mbox_conf_softmax" '
             'top: "mbox_conf_flatten" flatten_param { axis: 1 } }\n'
             'layer { name: "detection_out" type: "DetectionOutput" bottom: "mbox_loc" '
             'bottom: "mbox_conf_flatten" bottom: "mbox_priorbox" top: "detection_out"\n'
             f'  detection_output_param {{ num_classes: {CLASSES} share_location: true '
             'background_label_id: 0 nms_param { nms_threshold: 0.45 top_k: 100 } '
             'code_type: CENTER_SIZE keep_top_k: 100 confidence_threshold: 0.05 } }\n')
    return text
