"""Generated nets of real-world size for benchmarks and tests: GoogLeNet-like and ResNet-152-like."""
from __future__ import annotations


def inception_net(blocks: int = 9) -> str:
    """A GoogLeNet-sized net (stem + `blocks` inception modules + classifier), ~150 layers."""
    out = ['name: "inception"', 'layer { name: "data" type: "Input" top: "data" '
           'input_param { shape { dim: 10 dim: 3 dim: 224 dim: 224 } } }']

    def conv(name, bottom, num, kernel, stride=1, pad=0):
        out.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
                   f'param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }} '
                   f'convolution_param {{ num_output: {num} kernel_size: {kernel} stride: {stride} '
                   f'pad: {pad} weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" '
                   f'value: 0.2 }} }} }}')
        out.append(f'layer {{ name: "{name}_relu" type: "ReLU" bottom: "{name}" top: "{name}" }}')
        return name

    def pool(name, bottom, kernel, stride, pad=0, method="MAX"):
        out.append(f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{name}" '
                   f'pooling_param {{ pool: {method} kernel_size: {kernel} stride: {stride} pad: {pad} }} }}')
        return name

    x = pool("pool1", conv("conv1", "data", 64, 7, 2, 3), 3, 2)
    x = pool("pool2", conv("conv2", conv("conv2r", x, 64, 1), 192, 3, 1, 1), 3, 2)
    for b in range(blocks):
        branches = [conv(f"i{b}_1x1", x, 64, 1),
                    conv(f"i{b}_3x3", conv(f"i{b}_3x3r", x, 96, 1), 128, 3, 1, 1),
                    conv(f"i{b}_5x5", conv(f"i{b}_5x5r", x, 16, 1), 32, 5, 1, 2),
                    conv(f"i{b}_pp", pool(f"i{b}_pool", x, 3, 1, 1), 32, 1)]
        out.append(f'layer {{ name: "i{b}_out" type: "Concat" '
                   + " ".join(f'bottom: "{br}"' for br in branches) + f' top: "i{b}_out" }}')
        x = f"i{b}_out"
        if b in (1, 6):
            x = pool(f"pool_{b}", x, 3, 2)
    x = pool("gpool", x, 7, 1, method="AVE")
    out.append(f'layer {{ name: "drop" type: "Dropout" bottom: "{x}" top: "{x}" '
               'dropout_param { dropout_ratio: 0.4 } }')
    out.append(f'layer {{ name: "fc" type: "InnerProduct" bottom: "{x}" top: "fc" '
               'inner_product_param { num_output: 1000 } }')
    out.append('layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }')
    return "\n".join(out) + "\n"


def resnet_net(blocks=(3, 8, 36, 3)) -> str:
    """A ResNet-152-shaped net in the MSRA Caffe style: bottleneck blocks whose convolutions
    carry BatchNorm, Scale and ReLU in place; (3, 8, 36, 3) blocks give ~150 convolutions."""
    out = ['name: "resnet"', 'layer { name: "data" type: "Input" top: "data" '
           'input_param { shape { dim: 1 dim: 3 dim: 224 dim: 224 } } }']

    def conv(name, bottom, num, kernel, stride=1, pad=0, relu=True):
        out.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
                   f'convolution_param {{ num_output: {num} kernel_size: {kernel} pad: {pad} '
                   f'stride: {stride} bias_term: false }} }}')
        out.append(f'layer {{ name: "bn_{name}" type: "BatchNorm" bottom: "{name}" top: "{name}" '
                   'batch_norm_param { use_global_stats: true } }')
        out.append(f'layer {{ name: "scale_{name}" type: "Scale" bottom: "{name}" top: "{name}" '
                   'scale_param { bias_term: true } }')
        if relu:
            out.append(f'layer {{ name: "{name}_relu" type: "ReLU" bottom: "{name}" top: "{name}" }}')
        return name

    x = conv("conv1", "data", 64, 7, 2, 3)
    out.append(f'layer {{ name: "pool1" type: "Pooling" bottom: "{x}" top: "pool1" '
               'pooling_param { pool: MAX kernel_size: 3 stride: 2 } }')
    x, width = "pool1", 64
    for stage, count in enumerate(blocks, start=2):
        for block in range(count):
            name = f"res{stage}{chr(97 + block) if block < 26 else 'b' + str(block)}"
            stride = 2 if block == 0 and stage > 2 else 1
            shortcut = conv(f"{name}_branch1", x, width * 4, 1, stride, relu=False) \
                if block == 0 else x
            y = conv(f"{name}_branch2a", x, width, 1, stride)
            y = conv(f"{name}_branch2b", y, width, 3, 1, 1)
            y = conv(f"{name}_branch2c", y, width * 4, 1, relu=False)
            out.append(f'layer {{ name: "{name}" type: "Eltwise" bottom: "{shortcut}" '
                       f'bottom: "{y}" top: "{name}" }}')
            out.append(f'layer {{ name: "{name}_relu" type: "ReLU" bottom: "{name}" top: "{name}" }}')
            x = name
        width *= 2
    out.append(f'layer {{ name: "pool5" type: "Pooling" bottom: "{x}" top: "pool5" '
               'pooling_param { pool: AVE kernel_size: 7 stride: 1 } }')
    out.append('layer { name: "fc1000" type: "InnerProduct" bottom: "pool5" top: "fc1000" '
               'inner_product_param { num_output: 1000 } }')
    out.append('layer { name: "prob" type: "Softmax" bottom: "fc1000" top: "prob" }')
    return "\n".join(out) + "\n"
