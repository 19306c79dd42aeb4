"""MnasNet (torchvision): the mobile network found by platform-aware neural architecture search.

* Tan, Chen, Pang, Vasudevan, Sandler, Howard, Le. "MnasNet: Platform-Aware Neural Architecture Search
  for Mobile", CVPR 2019, arXiv:1807.11626. torchvision implements MnasNet-B1 of the first arXiv
  version (no squeeze-and-excitation; its stacks differ from the final paper's MnasNet-A1): the table below.
* Depth multiplier ``alpha`` (MobileNet-style width scaling, as in the paper's scaled models): every
  channel count of the table, the stem included, becomes ``make_divisible(c * alpha, 8)``
  (torchvision's ``_get_depths``, round to a multiple of 8 unless that loses more than 10%). The stem
  scales too: torchvision's "version 2" model, the one its ``mnasnet0_75`` and ``mnasnet1_3`` weights
  need (its loader still patches a "version 1" state_dict, stem fixed at 32 / 16, into the model).
* BatchNorm momentum 0.9997 in TensorFlow terms (PyTorch ``momentum=1 - 0.9997``; Flax
  ``bn_momentum=0.9997``), eps 1e-5; ReLU; dropout 0.2 before the classifier.

Names follow torchvision's ``nn.Sequential`` (activations take an index): ``layers_0`` / ``layers_1``
(3x3/2 conv, BN), ``layers_3`` / ``layers_4`` (3x3 depthwise), ``layers_6`` / ``layers_7`` (1x1 to 16),
the stacks ``layers_8`` ... ``layers_13`` of ``zoo.blocks.InvertedResidual`` (``layers_8_0/layers_0`` ...
``layers_8_0/layers_7``), ``layers_14`` / ``layers_15`` (1x1 conv to 1280), ``classifier_1``.

Named features (``zoo.features``): ``stem`` (``layers_0``..``layers_7``, torchvision's stem; 112x112x16
at 224), ``stage1`` .. ``stage6`` (the outputs of the stacks ``layers_8`` .. ``layers_13``: strides
4, 8, 16, 16, 32, 32), ``last_conv`` (``layers_14``-``16``, 1280 channels), ``pre_logits`` (the pooled 1280-vector).
"""
from __future__ import annotations

import flax.linen as nn

from zoo.blocks import PARTS, InvertedResidual
from zoo.checks import check_choice, check_rate
from zoo.layers import InputSpec, Ops, ZooModel, global_avg_pool, make_divisible, tap
from zoo.registry import Family, register

PAPER = ("Tan et al., MnasNet: Platform-Aware Neural Architecture Search for Mobile, CVPR 2019 (arXiv:1807.11626); "
         "torchvision (B1: no squeeze-and-excitation)")

# torchvision's MNASNet (B1). Stem: 3x3/2 conv (32), then a separable conv (3x3 depthwise, 1x1 to 16),
# no skip. Then the stacks of inverted residuals ("MBConv3" / "MBConv6": expansion 3 / 6):
# (output channels, kernel, stride of the first block, expansion, repeats). Output sizes at 224:
# 112 (stem), 56, 28, 14, 14, 7, 7; a final 1x1 conv to 1280, average pool, dropout, FC.
STEM_CHANNELS = (32, 16)
STACKS = (
    (24, 3, 2, 3, 3),
    (40, 5, 2, 3, 3),
    (80, 5, 2, 6, 3),
    (96, 3, 1, 6, 2),
    (192, 5, 2, 6, 4),
    (320, 3, 1, 6, 1),
)
LAST_CHANNEL = 1280  # not scaled by alpha
ALPHAS = (0.5, 0.75, 1.0, 1.3)  # the torchvision variants below

# torchvision's classifier init: kaiming_uniform_(mode="fan_out", nonlinearity="sigmoid"), bias zeros.
classifier_init = nn.initializers.variance_scaling(1.0, "fan_out", "uniform")


class MNASNet(ZooModel):
    """MnasNet-B1, torchvision layout.

    x: (B, H, W, 3), H, W >= 32 (global average pooling before the classifier).
    alpha: the depth multiplier, one of 0.5, 0.75, 1.0, 1.3 (torchvision's variants).
    dropout: before ``classifier_1``. BatchNorm: Flax momentum 0.9997 (PyTorch 0.0003), eps 1e-5.
    """

    bn_momentum: float = 0.9997
    alpha: float = 1.0
    dropout: float = 0.2

    def check_options(self):
        check_choice("alpha", self.alpha, ALPHAS)
        check_rate("dropout", self.dropout)

    def input_spec(self):
        return InputSpec(self.in_channels, min_size=32)

    def depth(self, c: int) -> int:
        """torchvision's ``_get_depths``: ``c * alpha`` rounded to a multiple of 8 (at most 10% down)."""
        return make_divisible(c * self.alpha, 8)

    def forward(self, x, ops: Ops):  # x: (B, H, W, C), checked
        c0, c1 = (self.depth(c) for c in STEM_CHANNELS)
        x = ops.conv_norm_act(x, c0, 3, strides=2, conv_name="layers_0", norm_name="layers_1")  # (B, H/2, W/2, c0)
        x = ops.conv_norm_act(x, c0, 3, groups=c0, conv_name="layers_3", norm_name="layers_4")  # depthwise
        x = ops.conv_norm_act(x, c1, 1, act=None, conv_name="layers_6", norm_name="layers_7")  # linear 1x1
        x = tap(self, "stem", x)
        for i, (c, k, s, t, n) in enumerate(STACKS):
            for j in range(n):
                x = InvertedResidual(self.depth(c), x.shape[-1] * t, ops, kernel=k, strides=s if j == 0 else 1,
                                     act=nn.relu, prefix="layers", flat=PARTS, name=f"layers_{8 + i}_{j}")(x)
            x = tap(self, f"stage{i + 1}", x)
        last = 8 + len(STACKS)
        x = ops.conv_norm_act(x, LAST_CHANNEL, 1, conv_name=f"layers_{last}", norm_name=f"layers_{last + 1}")
        x = tap(self, "last_conv", x)
        x = tap(self, "pre_logits", global_avg_pool(x))  # (B, 1280)
        x = ops.dropout(x, self.dropout)
        return ops.dense(x, self.num_classes, kernel_init=classifier_init, bias_init=nn.initializers.zeros,
                         name="classifier_1")


# ----------------------------------------------------------------------------- variants
# Figures: torchvision's weight metadata (../shared/reference.md). Evaluation resize: its weights' transforms
# (256 -> 224, for 0.75 and 1.3: 232 -> 224).
MNASNET = Family("mnasnet", paper=PAPER, head=("classifier_1",), input_size=224, weights_layout="torchvision")


@register(MNASNET, params=2_218_512, macs=0.104e9)
def mnasnet0_5(**kwargs) -> MNASNet:
    return MNASNet(alpha=0.5, **kwargs)


@register(MNASNET, params=3_170_208, macs=0.215e9, resize_size=232)
def mnasnet0_75(**kwargs) -> MNASNet:
    return MNASNet(alpha=0.75, **kwargs)


@register(MNASNET, params=4_383_312, macs=0.314e9)
def mnasnet1_0(**kwargs) -> MNASNet:
    return MNASNet(alpha=1.0, **kwargs)


@register(MNASNET, params=6_282_256, macs=0.526e9, resize_size=232)
def mnasnet1_3(**kwargs) -> MNASNet:
    return MNASNet(alpha=1.3, **kwargs)
