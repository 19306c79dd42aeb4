"""ShuffleNet v1 (the paper's Table 1 and the official Megvii release) and ShuffleNet v2 (torchvision).

* Zhang, Zhou, Lin, Sun. "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile
  Devices", CVPR 2018, arXiv:1707.01083. Table 1 (below), Figure 2 (the units), section 3.3 (``s x``
  widths). Official release: github.com/megvii-model/ShuffleNet-Series, ``ShuffleNetV1/``.
* Ma, Zhang, Zheng, Sun. "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
  Design", ECCV 2018, arXiv:1807.11164. Table 5 (below), Figure 3 (c, d); torchvision's
  ``shufflenetv2.py`` layout, names and (PyTorch default) init.

ShuffleNet v1, Table 1 (1x, 224x224; stage output channels per group count g)::

    layer       output   ksize stride repeat |  g=1   g=2   g=3   g=4   g=8
    conv1       112x112  3x3   2      1      |   24    24    24    24    24
    maxpool     56x56    3x3   2             |
    stage2      28x28          2 / 1  1 / 3  |  144   200   240   272   384
    stage3      14x14          2 / 1  1 / 7  |  288   400   480   544   768
    stage4      7x7            2 / 1  1 / 3  |  576   800   960  1088  1536
    global pool 1x1      7x7                 |
    FC                                       | 1000  1000  1000  1000  1000
    complexity (MFLOPs = mult-adds)          |  143   140   137   133   137

(Table 1's complexities are this count without the FC: with it, g = 2 / 4 / 8 give 141 / 134 / 138 M.)

ShuffleNet v2, Table 5 (224x224; output channels per width)::

    layer       output   ksize stride repeat | 0.5x   1x  1.5x   2x
    conv1       112x112  3x3   2      1      |   24    24    24    24
    maxpool     56x56    3x3   2             |
    stage2      28x28          2 / 1  1 / 3  |   48   116   176   244
    stage3      14x14          2 / 1  1 / 7  |   96   232   352   488
    stage4      7x7            2 / 1  1 / 3  |  192   464   704   976
    conv5       7x7      1x1   1      1      | 1024  1024  1024  2048
    global pool 1x1      7x7                 |
    FC                                       | 1000  1000  1000  1000
    FLOPs                                    |  41M  146M  299M  591M
    # of weights                             | 1.4M  2.3M  3.5M  7.4M

Names. v2 follows torchvision: ``conv1_0`` / ``conv1_1``, ``stage2_0/branch1_0`` ... ``branch2_6``,
``conv5_0`` / ``conv5_1``, ``fc`` (conversion from torchvision is rename + transpose). v1 has no
torchvision model: ``conv1_0`` / ``conv1_1``, ``stage2_0`` ... ``stage4_3`` (units with ``conv1/bn1``
1x1 group conv, ``conv2/bn2`` 3x3 depthwise, ``conv3/bn3`` 1x1 group conv), ``fc``.
Named features (``zoo.features``): ``stem``, ``stage2``, ``stage3``, ``stage4``, (``conv5`` for v2),
``pre_logits``.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo.checks import check_choice, check_positive_ints
from zoo.layers import InputSpec, Ops, ZooModel, avg_pool, global_avg_pool, tap, torch_default_kernel
from zoo.registry import Family, register

PAPER_V1 = ("Zhang et al., ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices, "
            "CVPR 2018 (arXiv:1707.01083), Table 1; official release megvii-model/ShuffleNet-Series")
PAPER_V2 = ("Ma et al., ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design, ECCV 2018 "
            "(arXiv:1807.11164), Table 5; torchvision")

# ============================================================================= ShuffleNet v1

GROUPS = (1, 2, 3, 4, 8)
WIDTHS = (0.5, 1.0, 1.5, 2.0)
V1_REPEATS = (4, 8, 4)  # units per stage (Table 1: 1 + 3, 1 + 7, 1 + 3)

# Table 1: stage2..4 output channels at 1x, per group count.
V1_STAGE_CHANNELS = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}

# conv1 channels per width in the official release (ShuffleNetV1/network.py, stage_out_channels[1]):
# 0.5x -> 12 (g=3) / 16 (g=8), 1.0x -> 24, 1.5x -> 24, 2.0x -> 48. Stage channels there are exactly
# s x Table 1: g=3 0.5x/1.5x/2.0x -> 120-240-480 / 360-720-1440 / 480-960-1920, g=8 -> 192-384-768 /
# 576-1152-2304 / 768-1536-3072.
V1_STEM_CHANNELS = {0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}


def _round_up(v: float, multiple: int) -> int:
    return int(math.ceil(v / multiple - 1e-9)) * multiple


def v1_channels(groups: int, width_mult: float) -> tuple[int, tuple[int, int, int]]:
    """(conv1 channels, stage2..4 output channels) of ShuffleNet v1 ``width_mult x`` with ``groups``.

    conv1: the official release's value per width, rounded up to a multiple of g (the first stride-2
    unit's residual branch has ``stage2 - conv1`` channels in g groups): this gives its 16 for g=8 at
    0.5x. Stages: s x Table 1 rounded up to a multiple of 4g (the bottleneck, ``out / 4``, is split in g
    groups). Both roundings leave every official table (g=3 and g=8, all widths) and all of Table 1
    unchanged; they only matter for g=2, 4 at 0.5x / 1.5x, which the release does not cover
    (s x Table 1 = 100 or 136 channels would not split: 104, 144 are used)."""
    stem = _round_up(V1_STEM_CHANNELS[width_mult], groups)
    stages = tuple(_round_up(c * width_mult, 4 * groups) for c in V1_STAGE_CHANNELS[groups])
    return stem, stages  # type: ignore[return-value]


def v1_conv_init(key, shape, dtype=jnp.float32):
    """Official release init of the unit convs: N(0, std = 1 / (C_in / groups)) (PyTorch
    ``weight.shape[1]``; HWIO ``shape[2]``)."""
    return jax.random.normal(key, shape, dtype) / shape[2]


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
    """ShuffleNet channel shuffle: ``(B, H, W, g*n) -> reshape (g, n) -> transpose -> flatten``."""
    b, h, w, c = x.shape
    if c % groups:
        raise ValueError(f"groups={groups} must divide the channel count {c}")
    return x.reshape(b, h, w, groups, c // groups).swapaxes(3, 4).reshape(b, h, w, c)


class ShuffleUnitV1(nn.Module):
    """Figure 2 (b), (c): 1x1 group conv (``out / 4`` bottleneck) -> BN -> ReLU -> channel shuffle ->
    3x3 depthwise conv (stride) -> BN (no ReLU) -> 1x1 group conv -> BN; stride 1: ReLU(x + branch);
    stride 2: ReLU(concat(3x3/2 avg-pool(x), branch)), the branch producing ``out - in`` channels.
    ``first_group=False`` (first unit of stage2): no group conv on the first pointwise layer.

    The official release differs in form only: it shuffles after the depthwise conv's BN with the
    inverse permutation (``reshape(n, g)``), and applies the stride-2 ReLU to the branch alone (the
    pooled input is already >= 0). Its weights therefore need a channel permutation, not only a rename."""

    out_channels: int
    strides: int
    groups: int
    ops: Ops
    first_group: bool = True

    @nn.compact
    def __call__(self, x):  # x: (B, H, W, C_in)
        ops, g = self.ops, self.groups
        in_ch = x.shape[-1]
        mid = self.out_channels // 4
        branch_out = self.out_channels - in_ch if self.strides == 2 else self.out_channels
        y = ops.conv_norm_act(x, mid, 1, groups=g if self.first_group else 1, kernel_init=v1_conv_init,
                              conv_name="conv1", norm_name="bn1")
        y = channel_shuffle(y, g)
        y = ops.conv_norm_act(y, mid, 3, strides=self.strides, groups=mid, act=None, kernel_init=v1_conv_init,
                              conv_name="conv2", norm_name="bn2")
        y = ops.conv_norm_act(y, branch_out, 1, groups=g, act=None, kernel_init=v1_conv_init,
                              conv_name="conv3", norm_name="bn3")
        if self.strides == 1:
            return nn.relu(x + y)
        return nn.relu(jnp.concatenate([avg_pool(x, 3, 2, padding=1), y], axis=-1))


class ShuffleNetV1(ZooModel):
    """ShuffleNet v1 (Table 1): 3x3/2 conv -> 3x3/2 max-pool -> stages 2-4 of ShuffleNet units
    (4, 8, 4; stride 2 in the first unit of each) -> global average pool -> FC.

    groups: g in (1, 2, 3, 4, 8). width_mult: s in (0.5, 1.0, 1.5, 2.0) (``ShuffleNet s x``), channels
    as the official release (see :func:`v1_channels`). x: (B, H, W, 3), H, W >= 32 (global pooling).
    The FC has no bias and the inits are the official release's (conv1 and FC N(0, 0.01), unit
    convs N(0, 1 / fan_in)); its BN bias init 1e-4 is left at 0.
    """

    groups: int = 3
    width_mult: float = 1.0

    def check_options(self):
        check_choice("groups", self.groups, GROUPS)
        check_choice("width_mult", self.width_mult, WIDTHS)

    def input_spec(self):
        return InputSpec(self.in_channels, min_size=32)

    def forward(self, x, ops: Ops):  # x: (B, H, W, C), checked
        stem, stages = v1_channels(self.groups, float(self.width_mult))
        x = ops.conv_norm_act(x, stem, 3, strides=2, kernel_init=nn.initializers.normal(0.01),
                              conv_name="conv1_0", norm_name="conv1_1")
        x = tap(self, "stem", ops.max_pool(x, 3, 2, padding=1))
        for i, (out_ch, n) in enumerate(zip(stages, V1_REPEATS)):
            for j in range(n):
                x = ShuffleUnitV1(out_ch, 2 if j == 0 else 1, self.groups, ops, first_group=not (i == 0 and j == 0),
                                  name=f"stage{i + 2}_{j}")(x)
            x = tap(self, f"stage{i + 2}", x)
        x = tap(self, "pre_logits", global_avg_pool(x))  # (B, stage4 channels)
        return ops.dense(x, self.num_classes, use_bias=False, kernel_init=nn.initializers.normal(0.01), name="fc")


# ============================================================================= ShuffleNet v2

class InvertedResidual(nn.Module):
    """torchvision's ``InvertedResidual`` (Figure 3 (c), (d)). Stride 1: split the channels in halves,
    ``branch2`` (1x1 -> BN -> ReLU -> 3x3 dw -> BN -> 1x1 -> BN -> ReLU) on the second half; stride 2:
    ``branch1`` (3x3/2 dw -> BN -> 1x1 -> BN -> ReLU) and ``branch2`` both on the whole input.
    Concatenate, then channel shuffle with 2 groups. Indices follow torchvision's Sequential."""

    out_channels: int
    strides: int
    ops: Ops

    @nn.compact
    def __call__(self, x):  # x: (B, H, W, C_in)
        ops = self.ops
        c = self.out_channels // 2
        kw = dict(kernel_init=torch_default_kernel)
        if self.strides == 1:
            x1, x2 = jnp.split(x, 2, axis=-1)
        else:
            x1 = ops.conv_norm_act(x, x.shape[-1], 3, strides=self.strides, groups=x.shape[-1], act=None,
                                   conv_name="branch1_0", norm_name="branch1_1", **kw)
            x1 = ops.conv_norm_act(x1, c, 1, conv_name="branch1_2", norm_name="branch1_3", **kw)
            x2 = x
        y = ops.conv_norm_act(x2, c, 1, conv_name="branch2_0", norm_name="branch2_1", **kw)
        y = ops.conv_norm_act(y, c, 3, strides=self.strides, groups=c, act=None,
                              conv_name="branch2_3", norm_name="branch2_4", **kw)
        y = ops.conv_norm_act(y, c, 1, conv_name="branch2_5", norm_name="branch2_6", **kw)
        return channel_shuffle(jnp.concatenate([x1, y], axis=-1), 2)


class ShuffleNetV2(ZooModel):
    """ShuffleNet v2, torchvision layout: conv1 (3x3/2) -> 3x3/2 max-pool -> stage2-4 -> conv5 (1x1)
    -> global mean -> fc. PyTorch default init everywhere (torchvision sets none).

    stages_repeats: units per stage (3 values); stages_out_channels: conv1, stage2-4, conv5 (5 values,
    stage channels even). x: (B, H, W, 3), H, W >= 32 (global pooling).
    """

    stages_repeats: Sequence[int] = (4, 8, 4)
    stages_out_channels: Sequence[int] = (24, 116, 232, 464, 1024)

    def check_options(self):
        check_positive_ints("stages_repeats", self.stages_repeats, 3)
        check_positive_ints("stages_out_channels", self.stages_out_channels, 5)
        if any(c % 2 for c in self.stages_out_channels[1:4]):
            raise ValueError(f"stages_out_channels={self.stages_out_channels!r}: stage channels (values 2-4) "
                             "must be even (the units split them in two branches)")

    def input_spec(self):
        return InputSpec(self.in_channels, min_size=32)

    def forward(self, x, ops: Ops):  # x: (B, H, W, C), checked
        chans = self.stages_out_channels
        x = ops.conv_norm_act(x, chans[0], 3, strides=2, kernel_init=torch_default_kernel,
                              conv_name="conv1_0", norm_name="conv1_1")
        x = tap(self, "stem", ops.max_pool(x, 3, 2, padding=1))
        for i, (n, out_ch) in enumerate(zip(self.stages_repeats, chans[1:4])):
            for j in range(n):
                x = InvertedResidual(out_ch, 2 if j == 0 else 1, ops, name=f"stage{i + 2}_{j}")(x)
            x = tap(self, f"stage{i + 2}", x)
        x = ops.conv_norm_act(x, chans[4], 1, kernel_init=torch_default_kernel, conv_name="conv5_0", norm_name="conv5_1")
        x = tap(self, "conv5", x)
        x = tap(self, "pre_logits", global_avg_pool(x))  # (B, conv5 channels)
        return ops.dense(x, self.num_classes, name="fc")


# ----------------------------------------------------------------------------- variants
SHUFFLENET_V2 = Family("shufflenet", paper=PAPER_V2, head=("fc",), input_size=224, weights_layout="torchvision")
SHUFFLENET_V1 = Family("shufflenet", paper=PAPER_V1, head=("fc",), input_size=224)

# V2: Table 5 (stages_out_channels); figures: torchvision's weight metadata.
@register(SHUFFLENET_V2, params=1_366_792, macs=0.04e9)
def shufflenet_v2_x0_5(**kwargs) -> ShuffleNetV2:
    return ShuffleNetV2(stages_repeats=(4, 8, 4), stages_out_channels=(24, 48, 96, 192, 1024), **kwargs)


@register(SHUFFLENET_V2, params=2_278_604, macs=0.145e9)
def shufflenet_v2_x1_0(**kwargs) -> ShuffleNetV2:
    return ShuffleNetV2(stages_repeats=(4, 8, 4), stages_out_channels=(24, 116, 232, 464, 1024), **kwargs)


@register(SHUFFLENET_V2, params=3_503_624, macs=0.296e9)
def shufflenet_v2_x1_5(**kwargs) -> ShuffleNetV2:
    return ShuffleNetV2(stages_repeats=(4, 8, 4), stages_out_channels=(24, 176, 352, 704, 1024), **kwargs)


@register(SHUFFLENET_V2, params=7_393_996, macs=0.583e9)
def shufflenet_v2_x2_0(**kwargs) -> ShuffleNetV2:
    return ShuffleNetV2(stages_repeats=(4, 8, 4), stages_out_channels=(24, 244, 488, 976, 2048), **kwargs)


# V1 at 1x: MACs from Table 1 (reference.md). Parameters: the official release's README
# (megvii-model/ShuffleNet-Series, ShuffleNetV1/README.md) lists 1.0x g=3 at 1.9M and g=8 at 2.4M;
# the paper gives none.
@register(SHUFFLENET_V1, macs=143e6)
def shufflenet_v1_g1(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=1, width_mult=1.0, **kwargs)


@register(SHUFFLENET_V1, macs=140e6)
def shufflenet_v1_g2(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=2, width_mult=1.0, **kwargs)


@register(SHUFFLENET_V1, params_approx="1.9M", macs=137e6)
def shufflenet_v1_g3(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=3, width_mult=1.0, **kwargs)


@register(SHUFFLENET_V1, macs=133e6)
def shufflenet_v1_g4(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=4, width_mult=1.0, **kwargs)


@register(SHUFFLENET_V1, params_approx="2.4M", macs=137e6)
def shufflenet_v1_g8(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=8, width_mult=1.0, **kwargs)


# The family's base name: the paper's usual configuration (1x, g=3); groups / width_mult are options.
@register(SHUFFLENET_V1, params_approx="1.9M", macs=137e6)
def shufflenet_v1(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(**kwargs)  # groups=3, width_mult=1.0


# Other widths: only those with published figures, the official release's README
# (ShuffleNetV1/README.md: "FLOPs" there are mult-adds, 138M for 1.0x g=3).
@register(SHUFFLENET_V1, params_approx="0.7M", macs=38e6, paper=PAPER_V1 + " (ShuffleNetV1/README.md)")
def shufflenet_v1_x0_5_g3(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=3, width_mult=0.5, **kwargs)


@register(SHUFFLENET_V1, params_approx="3.4M", macs=292e6, paper=PAPER_V1 + " (ShuffleNetV1/README.md)")
def shufflenet_v1_x1_5_g3(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=3, width_mult=1.5, **kwargs)


@register(SHUFFLENET_V1, params_approx="5.4M", macs=524e6, paper=PAPER_V1 + " (ShuffleNetV1/README.md)")
def shufflenet_v1_x2_0_g3(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=3, width_mult=2.0, **kwargs)


@register(SHUFFLENET_V1, params_approx="1.0M", macs=40e6, paper=PAPER_V1 + " (ShuffleNetV1/README.md)")
def shufflenet_v1_x0_5_g8(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=8, width_mult=0.5, **kwargs)


@register(SHUFFLENET_V1, params_approx="4.3M", macs=290e6, paper=PAPER_V1 + " (ShuffleNetV1/README.md)")
def shufflenet_v1_x1_5_g8(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=8, width_mult=1.5, **kwargs)


@register(SHUFFLENET_V1, params_approx="6.5M", macs=522e6, paper=PAPER_V1 + " (ShuffleNetV1/README.md)")
def shufflenet_v1_x2_0_g8(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=8, width_mult=2.0, **kwargs)
