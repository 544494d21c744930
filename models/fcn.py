"""Writes models/fcn32s.prototxt, fcn16s.prototxt, fcn8s.prototxt and fcn8s_crfrnn.prototxt.

FCN-VGG16 (Long, Shelhamer & Darrell): VGG-16 with fc6/fc7 as 7x7 and 1x1
convolutions, pad 100 on conv1_1 so small inputs still give a score map, a
1x1 class scorer, bilinear Deconvolution upsampling and, for 16s/8s, skip
fusions from pool4 and pool3. One file per net: include rules give the TRAIN
net (labels, SoftmaxWithLoss ignoring 255) and the TEST net (scores only).

The Crop offsets are not typed in: this script writes the nets without them,
asks netdef's solver (coordinate maps) for the offsets, and writes them in.
Run `python models/fcn.py` after changing it; a test checks the files match.
"""
from __future__ import annotations

import sys
from pathlib import Path

MODELS = Path(__file__).resolve().parent
CLASSES = 21  # PASCAL VOC: 20 classes and background
INPUT = (1, 3, 500, 500)

VGG16 = [  # (stage, convolutions, channels)
    (1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)]

LEARNED = "param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }"


class Writer:
    def __init__(self, name: str, description: str):
        self.lines = [f"# {line}".rstrip() for line in description.strip().splitlines()]
        self.lines += [f'name: "{name}"', ""]

    def layer(self, name, kind, bottoms=(), tops=None, body="", include=None):
        tops = [name] if tops is None else tops
        parts = [f'  name: "{name}"', f'  type: "{kind}"']
        parts += [f'  bottom: "{b}"' for b in bottoms] + [f'  top: "{t}"' for t in tops]
        if include:
            parts.append(f"  include {{ phase: {include} }}")
        parts += [f"  {line}" for line in body.strip().splitlines()] if body else []
        self.lines += ["layer {", *parts, "}"]
        return tops[0]

    def conv(self, name, bottom, channels, kernel, pad=0, filler="xavier", params=LEARNED):
        self.layer(name, "Convolution", [bottom], body=f"""
{params}
convolution_param {{
  num_output: {channels}
  kernel_size: {kernel}
  pad: {pad}
  weight_filler {{ type: "{filler}" }}
}}""")
        return name

    def relu(self, blob, name):
        self.layer(name, "ReLU", [blob], [blob])

    def upscore(self, name, bottom, factor, learned):
        """Bilinear upsampling by `factor`: kernel 2f, stride f, one filter per class (group),
        which is the only way Caffe's bilinear filler gives per-class interpolation."""
        lr = "param { lr_mult: 1 decay_mult: 1 }" if learned else "param { lr_mult: 0 }"
        return self.layer(name, "Deconvolution", [bottom], body=f"""
{lr}
convolution_param {{
  num_output: {CLASSES}
  group: {CLASSES}
  kernel_size: {2 * factor}
  stride: {factor}
  bias_term: false
  weight_filler {{ type: "bilinear" }}
}}""")

    def crop(self, name, bottom, reference, offsets):
        offset = offsets.get(name)
        body = f"crop_param {{ axis: 2 offset: {offset} }}" if offset is not None else ""
        return self.layer(name, "Crop", [bottom, reference], body=body)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def inputs(net: Writer, shape=INPUT, label: str = "label") -> None:
    """TRAIN: the image and a one-channel label map of its size; TEST: the image."""
    n, c, h, w = shape
    net.layer("input", "Input", tops=["data", label], include="TRAIN", body=f"""
input_param {{
  shape {{ dim: {n} dim: {c} dim: {h} dim: {w} }}
  shape {{ dim: {n} dim: 1 dim: {h} dim: {w} }}
}}""")
    net.layer("input", "Input", tops=["data"], include="TEST", body=f"""
input_param {{ shape {{ dim: {n} dim: {c} dim: {h} dim: {w} }} }}""")


def vgg16(net: Writer) -> str:
    """VGG-16 up to fc7 (as convolutions, with dropout); returns the fc7 blob."""
    x = "data"
    for stage, count, channels in VGG16:
        for index in range(1, count + 1):
            name = f"conv{stage}_{index}"
            x = net.conv(name, x, channels, 3, pad=100 if name == "conv1_1" else 1)
            net.relu(x, f"relu{stage}_{index}")
        x = net.layer(f"pool{stage}", "Pooling", [x], body="""
pooling_param { pool: MAX kernel_size: 2 stride: 2 }""")
    for name, kernel in (("fc6", 7), ("fc7", 1)):
        x = net.conv(name, x, 4096, kernel)
        net.relu(x, f"relu{name[2:]}")
        net.layer(f"drop{name[2:]}", "Dropout", [x], [x], body="dropout_param { dropout_ratio: 0.5 }")
    return x


def scorer(net: Writer, name: str, bottom: str) -> str:
    """1x1 class scores, zero-initialised as in the FCN paper."""
    return net.conv(name, bottom, CLASSES, 1, filler="constant")


def head(net: Writer, score: str) -> None:
    net.layer("loss", "SoftmaxWithLoss", [score, "label"], include="TRAIN", body="""
loss_param { ignore_label: 255 normalize: false }""")


def crf_head(net: Writer, score: str) -> None:
    """CRF-RNN (Zheng et al. 2015): the scores are both the unary and the first iteration's
    logits of 10 mean-field iterations over the image; its reference settings (thetas 160, 3,
    3; spatial weight 3, bilateral 5; learning rates 10000, 10000, 1000)."""
    net.layer("splitting", "Split", [score], ["unary", "Q0"])
    spatial, bilateral = " ".join(["3"] * CLASSES), " ".join(["5"] * CLASSES)
    pred = net.layer("inference1", "MultiStageMeanfield", ["unary", "Q0", "data"], ["pred"],
                     body=f"""
param {{ lr_mult: 10000 }}  # spatial kernel weights
param {{ lr_mult: 10000 }}  # bilateral kernel weights
param {{ lr_mult: 1000 }}  # compatibility transform
multi_stage_meanfield_param {{
  num_iterations: 10
  compatibility_mode: POTTS
  threshold: 2
  theta_alpha: 160
  theta_beta: 3
  theta_gamma: 3
  spatial_filter_weights_str: "{spatial}"
  bilateral_filter_weights_str: "{bilateral}"
}}""")
    head(net, pred)


def skip_fusion(net: Writer, upsampled: str, pool: str, offsets) -> str:
    """The pool's class scores, cropped onto the upsampled scores and summed with them."""
    cropped = net.crop(f"score_{pool}c", scorer(net, f"score_{pool}", pool), upsampled, offsets)
    return net.layer(f"fuse_{pool}", "Eltwise", [upsampled, cropped],
                     body="eltwise_param { operation: SUM }")


def fcn(name: str, summary: str, skips: list[str], final_factor: int, final_name: str, offsets,
        crf: bool = False):
    """VGG-16 scores at stride 32, then 2x upsampling and one fusion per skip pool, then the
    final upsampling to the image, cropped onto it."""
    net = Writer(name, f"{summary}\nGenerated by models/fcn.py; crop offsets solved by netdef.")
    inputs(net)
    x = scorer(net, "score_fr", vgg16(net))
    for index, pool in enumerate(skips):
        up_name = "upscore2" if index == 0 else f"upscore_{skips[index - 1]}"
        x = skip_fusion(net, net.upscore(up_name, x, 2, learned=True), pool, offsets)
    up = net.upscore(final_name, x, final_factor, learned=False)
    (crf_head if crf else head)(net, net.crop("score", up, "data", offsets))
    return net.text()


def fcn32s(offsets) -> str:
    return fcn("FCN-32s", "FCN-32s: VGG-16 scores at stride 32, upsampled 32x in one step.",
               [], 32, "upscore", offsets)


def fcn16s(offsets) -> str:
    return fcn("FCN-16s", "FCN-16s: stride-32 scores upsampled 2x and fused with pool4's, then 16x.",
               ["pool4"], 16, "upscore16", offsets)


def fcn8s(offsets) -> str:
    return fcn("FCN-8s", "FCN-8s: FCN-16s's fusion, upsampled 2x again and fused with pool3's, "
               "then 8x.", ["pool4", "pool3"], 8, "upscore8", offsets)


def fcn8s_crfrnn(offsets) -> str:
    return fcn("FCN-8s-CRF-RNN", "FCN-8s with the CRF-RNN head: its scores, refined by 10 "
               "mean-field iterations\nof a fully connected CRF over the image.",
               ["pool4", "pool3"], 8, "upscore8", offsets, crf=True)


NETS = {"fcn32s": fcn32s, "fcn16s": fcn16s, "fcn8s": fcn8s, "fcn8s_crfrnn": fcn8s_crfrnn}


def solved_offsets(text: str) -> dict[str, int]:
    """Each Crop's offset from netdef's solver (the same on both spatial axes)."""
    from netdef.compiler.analysis import check_net
    from netdef.errors import raise_if_errors

    net, problems = check_net(text)
    raise_if_errors(problems)
    offsets = {}
    for layer in net.layers:
        values = layer.solution.get("offset")
        if values:
            assert len(set(values)) == 1, f"{layer.name}: offsets differ per axis: {values}"
            offsets[layer.name] = values[0]
    return offsets


def generate(name: str) -> str:
    build = NETS[name]
    return build(solved_offsets(build({})))


def main(argv: list[str]) -> int:
    for name in argv or NETS:
        path = MODELS / f"{name}.prototxt"
        path.write_text(generate(name))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
