"""FCN-8s (Long, Shelhamer and Darrell) as models/fcn8s.prototxt has it, written by hand in eager
PyTorch: the peer netdef's CUDA module is held to (issue #17). Nothing here comes from netdef;
the weights are copied in from any module whose parameters carry the Caffe layer names."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

VGG_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
CLASSES = 21


class FCN8s(nn.Module):
    def __init__(self):
        super().__init__()
        channels = 3
        for block, (width, depth) in enumerate(VGG_BLOCKS, start=1):
            for index in range(1, depth + 1):
                # conv1_1 pads by 100 so that any input size survives the 32x reduction
                pad = 100 if (block, index) == (1, 1) else 1
                self.add_module(f"conv{block}_{index}", nn.Conv2d(channels, width, 3, padding=pad))
                channels = width
        self.fc6 = nn.Conv2d(512, 4096, 7)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.score_fr = nn.Conv2d(4096, CLASSES, 1)
        self.score_pool4 = nn.Conv2d(512, CLASSES, 1)
        self.score_pool3 = nn.Conv2d(256, CLASSES, 1)
        self.upscore2 = upsampling(4, 2)
        self.upscore_pool4 = upsampling(4, 2)
        self.upscore8 = upsampling(16, 8)

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        x, pools = data, []
        for block, (_, depth) in enumerate(VGG_BLOCKS, start=1):
            for index in range(1, depth + 1):
                x = F.relu(getattr(self, f"conv{block}_{index}")(x))
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)  # Caffe rounds pooled sizes up
            pools.append(x)
        x = F.relu(self.fc7(F.relu(self.fc6(x))))
        upscore2 = self.upscore2(self.score_fr(x))
        fuse_pool4 = upscore2 + crop(self.score_pool4(pools[3]), upscore2, 5)
        upscore_pool4 = self.upscore_pool4(fuse_pool4)
        fuse_pool3 = upscore_pool4 + crop(self.score_pool3(pools[2]), upscore_pool4, 9)
        return crop(self.upscore8(fuse_pool3), data, 31)

    def copy_from(self, caffe_module: nn.Module) -> "FCN8s":
        """Take the weights of a module whose parameters are named `layer.weight`/`layer.bias`."""
        theirs = dict(caffe_module.named_parameters())
        with torch.no_grad():
            for name, parameter in self.named_parameters():
                parameter.copy_(theirs[name].reshape(parameter.shape))
        return self


def upsampling(kernel: int, stride: int) -> nn.ConvTranspose2d:
    """One class per group, as the flagship's bilinear upsampling layers are written."""
    return nn.ConvTranspose2d(CLASSES, CLASSES, kernel, stride=stride, groups=CLASSES, bias=False)


def crop(x: torch.Tensor, like: torch.Tensor, offset: int) -> torch.Tensor:
    """x's window of like's height and width, starting `offset` pixels in (the voc-fcn8s crops)."""
    height, width = like.shape[-2:]
    return x[..., offset:offset + height, offset:offset + width]
