"""Generated nets of real-world size for benchmarks and tests: GoogLeNet-like, ResNet-like,
VGG-16, SqueezeNet 1.1, MobileNet v1 and DenseNet-121."""
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


class _Writer:
    """Layer lines for the generators below: conv (+BatchNorm/Scale, +ReLU), pool, concat."""

    def __init__(self, name: str, size: int = 224):
        self.out = [f'name: "{name}"', 'layer { name: "data" type: "Input" top: "data" '
                    f'input_param {{ shape {{ dim: 1 dim: 3 dim: {size} dim: {size} }} }} }}']

    def conv(self, name, bottom, num, kernel, stride=1, pad=0, group=1, bn=False, relu=True):
        group_text = f" group: {group}" if group > 1 else ""
        self.out.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" '
                        f'top: "{name}" convolution_param {{ num_output: {num} kernel_size: '
                        f'{kernel} stride: {stride} pad: {pad}{group_text} bias_term: '
                        f'{"false" if bn else "true"} }} }}')
        if bn:
            self.norm(name)
        if relu:
            self.relu(name)
        return name

    def norm(self, name):
        self.out.append(f'layer {{ name: "{name}/bn" type: "BatchNorm" bottom: "{name}" '
                        f'top: "{name}" batch_norm_param {{ use_global_stats: true }} }}')
        self.out.append(f'layer {{ name: "{name}/scale" type: "Scale" bottom: "{name}" '
                        f'top: "{name}" scale_param {{ bias_term: true }} }}')

    def preactivated(self, name, bottom):
        """BatchNorm + Scale + ReLU of `bottom` into a new blob (DenseNet's pre-activation)."""
        self.out.append(f'layer {{ name: "{name}" type: "BatchNorm" bottom: "{bottom}" '
                        f'top: "{name}" batch_norm_param {{ use_global_stats: true }} }}')
        self.out.append(f'layer {{ name: "{name}/scale" type: "Scale" bottom: "{name}" '
                        f'top: "{name}" scale_param {{ bias_term: true }} }}')
        self.relu(name)
        return name

    def relu(self, name):
        self.out.append(f'layer {{ name: "{name}/relu" type: "ReLU" bottom: "{name}" '
                        f'top: "{name}" }}')

    def pool(self, name, bottom, kernel, stride, method="MAX", pad=0, global_=False):
        window = "global_pooling: true" if global_ else \
            f"kernel_size: {kernel} stride: {stride} pad: {pad}"
        self.out.append(f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" '
                        f'top: "{name}" pooling_param {{ pool: {method} {window} }} }}')
        return name

    def concat(self, name, bottoms):
        self.out.append(f'layer {{ name: "{name}" type: "Concat" '
                        + " ".join(f'bottom: "{b}"' for b in bottoms) + f' top: "{name}" }}')
        return name

    def classifier(self, bottom, conv: bool = False):
        if conv:  # SqueezeNet: a 1x1 convolution to the classes, then global average
            self.pool("pool_global", self.conv("classes", bottom, 1000, 1), 0, 0, "AVE",
                      global_=True)
            bottom = "pool_global"
        else:
            self.out.append(f'layer {{ name: "fc" type: "InnerProduct" bottom: "{bottom}" '
                            'top: "fc" inner_product_param { num_output: 1000 } }')
            bottom = "fc"
        self.out.append(f'layer {{ name: "prob" type: "Softmax" bottom: "{bottom}" '
                        'top: "prob" }')
        return "\n".join(self.out) + "\n"


def vgg16_net() -> str:
    """VGG-16 (ILSVRC, 224 x 224): 13 convolutions in five stages, three fully connected."""
    net = _Writer("VGG16")
    x = "data"
    for stage, (width, count) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)],
                                           start=1):
        for index in range(1, count + 1):
            x = net.conv(f"conv{stage}_{index}", x, width, 3, pad=1)
        x = net.pool(f"pool{stage}", x, 2, 2)
    for name, width in (("fc6", 4096), ("fc7", 4096)):
        net.out.append(f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{x}" '
                       f'top: "{name}" inner_product_param {{ num_output: {width} }} }}')
        net.relu(name)
        x = name
    return net.classifier(x)


def squeezenet_net() -> str:
    """SqueezeNet 1.1: a 3x3/2 stem, eight fire modules (1x1 squeeze, 1x1 + 3x3 expand)."""
    net = _Writer("SqueezeNet1.1")
    x = net.pool("pool1", net.conv("conv1", "data", 64, 3, 2), 3, 2)
    fires = [(16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192), (64, 256), (64, 256)]
    for number, (squeeze, expand) in enumerate(fires, start=2):
        s = net.conv(f"fire{number}/squeeze1x1", x, squeeze, 1)
        x = net.concat(f"fire{number}/concat", [net.conv(f"fire{number}/expand1x1", s, expand, 1),
                                                 net.conv(f"fire{number}/expand3x3", s, expand,
                                                          3, pad=1)])
        if number in (3, 5):
            x = net.pool(f"pool{number}", x, 3, 2)
    return net.classifier(x, conv=True)


def mobilenet_net() -> str:
    """MobileNet v1 (1.0, 224): depthwise 3x3 + pointwise 1x1 pairs, BatchNorm + Scale + ReLU
    after every convolution, as the Caffe ports write it (depthwise = grouped Convolution)."""
    net = _Writer("MobileNet")
    x = net.conv("conv1", "data", 32, 3, 2, 1, bn=True)
    channels = 32
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + \
        [(1024, 2), (1024, 1)]
    for index, (width, stride) in enumerate(plan, start=2):
        x = net.conv(f"conv{index}_dw", x, channels, 3, stride, 1, group=channels, bn=True)
        x = net.conv(f"conv{index}_pw", x, width, 1, bn=True)
        channels = width
    return net.classifier(net.pool("pool6", x, 0, 0, "AVE", global_=True))


def densenet_net(blocks=(6, 12, 24, 16), growth: int = 32) -> str:
    """DenseNet-121: dense blocks of BN-ReLU-1x1(4k)-BN-ReLU-3x3(k) layers whose outputs are
    concatenated, transitions BN-ReLU-1x1 halving the channels then 2x2 average pooling."""
    net = _Writer("DenseNet121")
    x = net.pool("pool1", net.conv("conv1", "data", 64, 7, 2, 3, bn=True), 3, 2, pad=1)
    channels = 64
    for block, layers in enumerate(blocks, start=1):
        for layer in range(1, layers + 1):
            name = f"conv{block + 1}_{layer}"
            y = net.conv(f"{name}/x1", net.preactivated(f"{name}/pre", x), 4 * growth, 1, bn=True)
            y = net.conv(f"{name}/x2", y, growth, 3, pad=1, relu=False)
            x = net.concat(f"concat_{block + 1}_{layer}", [x, y])
            channels += growth
        if block < len(blocks):
            name = f"conv{block + 1}_blk"
            channels //= 2
            x = net.pool(f"pool{block + 1}", net.conv(name, net.preactivated(f"{name}/pre", x),
                                                      channels, 1, relu=False), 2, 2, "AVE")
    net.norm(x)
    net.relu(x)
    return net.classifier(net.pool("pool_final", x, 0, 0, "AVE", global_=True))
