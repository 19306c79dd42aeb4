"""ResNet v1.5, ResNeXt and Wide ResNet (torchvision), and the CIFAR ResNets of He et al.

* He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", CVPR 2016,
  arXiv:1512.03385. Table 1 (ImageNet depths) and section 4.2 (CIFAR-10: 6n+2 layers, 16-32-64
  channels, option-A identity shortcuts with zero padding).
* v1.5: the stride of a bottleneck sits on its 3x3 conv (torchvision, NVIDIA's "ResNet v1.5").
* Xie et al. "Aggregated Residual Transformations for Deep Neural Networks" (ResNeXt), CVPR 2017.
* Zagoruyko, Komodakis. "Wide Residual Networks", BMVC 2016 (torchvision's wide_resnet*_2: the
  bottleneck's inner width doubled).

Names follow torchvision: ``conv1``, ``bn1``, ``layer1_0/conv1``, ``layer1_0/downsample_0``, ``fc``.
Named features (``zoo.features``): ``stem``, ``layer1`` ... ``layer4`` (``layer1..3`` for CIFAR), ``pre_logits``.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from zoo.checks import check_bool, check_choice, check_positive_int, check_positive_ints
from zoo.layers import InputSpec, Ops, ZooModel, global_avg_pool, tap
from zoo.registry import Family, register

PAPER = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016 (arXiv:1512.03385); torchvision v1.5"
PAPER_RESNEXT = "Xie et al., Aggregated Residual Transformations for Deep Neural Networks, CVPR 2017 (arXiv:1611.05431)"
PAPER_WIDE = "Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016 (arXiv:1605.07146); torchvision wide_resnet"

# Table 1 of the paper, blocks per stage (the variants below):
#   resnet18  basic       2-2-2-2      resnet50   bottleneck  3-4-6-3      resnet152  bottleneck  3-8-36-3
#   resnet34  basic       3-4-6-3      resnet101  bottleneck  3-4-23-3


class BasicBlock(nn.Module):
    """3x3 -> 3x3 with identity or projection shortcut (``downsample_0/1``: 1x1 conv + norm).
    ``shortcut='A'`` (CIFAR ResNets): subsample by striding and zero-pad the new channels.
    ``zero_init_residual``: the last norm's scale starts at 0 (each block starts as its shortcut)."""

    planes: int
    strides: int
    ops: Ops
    shortcut: str = "B"
    zero_init_residual: bool = False
    expansion = 1

    @nn.compact
    def __call__(self, x):  # x: (B, H, W, C_in)
        ops = self.ops
        y = ops.conv_norm_act(x, self.planes, 3, strides=self.strides, conv_name="conv1", norm_name="bn1")
        y = ops.conv_norm_act(y, self.planes, 3, act=None, conv_name="conv2", norm_name="bn2",
                              norm_scale_init=_last_scale_init(self.zero_init_residual))
        return nn.relu(y + _shortcut(ops, x, self.planes, self.strides, self.shortcut))


class Bottleneck(nn.Module):
    """1x1 (width) -> 3x3 (width, stride, groups) -> 1x1 (4 * planes); v1.5 stride on the 3x3.
    ``zero_init_residual`` as for :class:`BasicBlock` (``bn3``)."""

    planes: int
    strides: int
    ops: Ops
    groups: int = 1
    width_per_group: int = 64
    shortcut: str = "B"
    zero_init_residual: bool = False
    expansion = 4

    @nn.compact
    def __call__(self, x):  # x: (B, H, W, C_in)
        ops = self.ops
        width = int(self.planes * (self.width_per_group / 64.0)) * self.groups
        y = ops.conv_norm_act(x, width, 1, conv_name="conv1", norm_name="bn1")
        y = ops.conv_norm_act(y, width, 3, strides=self.strides, groups=self.groups, conv_name="conv2", norm_name="bn2")
        y = ops.conv_norm_act(y, self.planes * 4, 1, act=None, conv_name="conv3", norm_name="bn3",
                              norm_scale_init=_last_scale_init(self.zero_init_residual))
        return nn.relu(y + _shortcut(ops, x, self.planes * 4, self.strides, self.shortcut))


def _last_scale_init(zero: bool):
    """torchvision's ``zero_init_residual``: ``nn.init.constant_(bn.weight, 0)`` on each block's last norm."""
    return nn.initializers.zeros if zero else nn.initializers.ones


def _shortcut(ops: Ops, x, out_ch: int, strides: int, kind: str):
    if strides == 1 and x.shape[-1] == out_ch:
        return x
    if kind == "A":  # option A: identity on subsampled input, zero padding for the extra channels
        x = x[:, ::strides, ::strides, :]
        extra = out_ch - x.shape[-1]
        return jax.numpy.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    return ops.conv_norm_act(x, out_ch, 1, strides=strides, act=None, conv_name="downsample_0", norm_name="downsample_1")


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(ZooModel):
    """ImageNet ResNet / ResNeXt / Wide ResNet, torchvision layout.

    x: (B, H, W, 3), H, W >= 32 (adaptive average pooling before ``fc``).
    ``small_input=True`` replaces the 7x7/2 stem and max-pool with a 3x3/1 conv (32x32 images).
    ``zero_init_residual=True`` (torchvision's option; Goyal et al. 2017, the Flax ImageNet example)
    starts each block's last norm scale at 0.
    """

    block: str = "basic"
    layers: Sequence[int] = (2, 2, 2, 2)
    groups: int = 1
    width_per_group: int = 64
    small_input: bool = False
    zero_init_residual: bool = False

    def check_options(self):
        check_choice("block", self.block, BLOCKS)
        check_positive_ints("layers", self.layers, 4)  # blocks per stage
        check_positive_int("groups", self.groups)
        check_positive_int("width_per_group", self.width_per_group)
        if self.block == "basic" and (self.groups, self.width_per_group) != (1, 64):
            # torchvision: "BasicBlock only supports groups=1 and base_width=64" (they were ignored here)
            raise ValueError(f"groups={self.groups!r}, width_per_group={self.width_per_group!r}: basic blocks "
                             "(resnet18 / resnet34) take only groups=1 and width_per_group=64; grouped and "
                             "wide ResNets use bottleneck blocks (resnext50_32x4d, wide_resnet50_2)")
        check_bool("small_input", self.small_input)
        check_bool("zero_init_residual", self.zero_init_residual)

    def input_spec(self):
        if self.small_input:   # the CIFAR stem: 32x32 images
            return InputSpec(self.in_channels, min_size=8, native_size=32)
        return InputSpec(self.in_channels, min_size=32)

    def forward(self, x, ops: Ops):  # x: (B, H, W, C), checked
        if self.small_input:
            x = ops.conv_norm_act(x, 64, 3, conv_name="conv1", norm_name="bn1")
        else:
            x = ops.conv_norm_act(x, 64, 7, strides=2, conv_name="conv1", norm_name="bn1")
            x = ops.max_pool(x, 3, 2, padding=1)
        x = tap(self, "stem", x)
        block = BLOCKS[self.block]
        extra = dict(groups=self.groups, width_per_group=self.width_per_group) if self.block == "bottleneck" else {}
        extra["zero_init_residual"] = self.zero_init_residual
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), self.layers)):
            for j in range(n):
                strides = 2 if (i > 0 and j == 0) else 1
                x = block(planes, strides, ops, name=f"layer{i + 1}_{j}", **extra)(x)
            x = tap(self, f"layer{i + 1}", x)
        x = tap(self, "pre_logits", global_avg_pool(x))  # (B, 512 * expansion)
        return ops.dense(x, self.num_classes, name="fc")


class CifarResNet(ZooModel):
    """He et al. 2016 sec. 4.2: 3x3 conv (16) -> 3 stages of n basic blocks (16, 32, 64 channels,
    option-A shortcuts) -> global average pool -> fc. depth = 6n + 2. x: (B, 32, 32, 3) (any >= 4)."""

    num_classes: int = 10
    depth: int = 20

    def check_options(self):
        if not isinstance(self.depth, int) or self.depth < 8 or (self.depth - 2) % 6:
            raise ValueError(f"depth={self.depth!r}: must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110)")

    def input_spec(self):
        return InputSpec(self.in_channels, min_size=4)

    def forward(self, x, ops: Ops):  # x: (B, H, W, C), checked
        x = tap(self, "stem", ops.conv_norm_act(x, 16, 3, conv_name="conv1", norm_name="bn1"))
        n = (self.depth - 2) // 6
        for i, planes in enumerate((16, 32, 64)):
            for j in range(n):
                x = BasicBlock(planes, 2 if (i > 0 and j == 0) else 1, ops, shortcut="A", name=f"layer{i + 1}_{j}")(x)
            x = tap(self, f"layer{i + 1}", x)
        x = tap(self, "pre_logits", global_avg_pool(x))  # (B, 64)
        return ops.dense(x, self.num_classes, name="fc")


# ----------------------------------------------------------------------------- variants
RESNET = Family("resnet", paper=PAPER, head=("fc",), input_size=224, weights_layout="torchvision")
CIFAR = Family("resnet", paper=PAPER + ", sec. 4.2 (CIFAR-10)", head=("fc",), input_size=32)


# ImageNet depths (Table 1; figures: torchvision's weight metadata).
@register(RESNET, params=11_689_512, macs=1.814e9)
def resnet18(**kwargs) -> ResNet:
    return ResNet(block="basic", layers=(2, 2, 2, 2), **kwargs)


@register(RESNET, params=21_797_672, macs=3.664e9)
def resnet34(**kwargs) -> ResNet:
    return ResNet(block="basic", layers=(3, 4, 6, 3), **kwargs)


@register(RESNET, params=25_557_032, macs=4.089e9)
def resnet50(**kwargs) -> ResNet:
    return ResNet(block="bottleneck", layers=(3, 4, 6, 3), **kwargs)


@register(RESNET, params=44_549_160, macs=7.801e9)
def resnet101(**kwargs) -> ResNet:
    return ResNet(block="bottleneck", layers=(3, 4, 23, 3), **kwargs)


@register(RESNET, params=60_192_808, macs=11.514e9)
def resnet152(**kwargs) -> ResNet:
    return ResNet(block="bottleneck", layers=(3, 8, 36, 3), **kwargs)


@register(RESNET, params=25_028_904, macs=4.23e9, paper=PAPER_RESNEXT)
def resnext50_32x4d(**kwargs) -> ResNet:
    return ResNet(block="bottleneck", layers=(3, 4, 6, 3), groups=32, width_per_group=4, **kwargs)


@register(RESNET, params=88_791_336, macs=16.414e9, paper=PAPER_RESNEXT)
def resnext101_32x8d(**kwargs) -> ResNet:
    return ResNet(block="bottleneck", layers=(3, 4, 23, 3), groups=32, width_per_group=8, **kwargs)


@register(RESNET, params=83_455_272, macs=15.46e9, paper=PAPER_RESNEXT)
def resnext101_64x4d(**kwargs) -> ResNet:
    return ResNet(block="bottleneck", layers=(3, 4, 23, 3), groups=64, width_per_group=4, **kwargs)


@register(RESNET, params=68_883_240, macs=11.398e9, paper=PAPER_WIDE)
def wide_resnet50_2(**kwargs) -> ResNet:
    return ResNet(block="bottleneck", layers=(3, 4, 6, 3), width_per_group=128, **kwargs)


@register(RESNET, params=126_886_696, macs=22.753e9, paper=PAPER_WIDE)
def wide_resnet101_2(**kwargs) -> ResNet:
    return ResNet(block="bottleneck", layers=(3, 4, 23, 3), width_per_group=128, **kwargs)


# CIFAR ResNets, depth 6n + 2: the paper's Table 6 gives 0.27M / 0.46M / 0.66M / 0.85M / 1.7M parameters.
@register(CIFAR, params_approx="0.27M")
def resnet20(**kwargs) -> CifarResNet:
    return CifarResNet(depth=20, **kwargs)


@register(CIFAR, params_approx="0.46M")
def resnet32(**kwargs) -> CifarResNet:
    return CifarResNet(depth=32, **kwargs)


@register(CIFAR, params_approx="0.66M")
def resnet44(**kwargs) -> CifarResNet:
    return CifarResNet(depth=44, **kwargs)


@register(CIFAR, params_approx="0.85M")
def resnet56(**kwargs) -> CifarResNet:
    return CifarResNet(depth=56, **kwargs)


@register(CIFAR, params_approx="1.7M")
def resnet110(**kwargs) -> CifarResNet:
    return CifarResNet(depth=110, **kwargs)
