"""EfficientNet B0-B7 and EfficientNetV2 S / M / L (torchvision).

* Tan & Le. "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019,
  arXiv:1905.11946. Table 1: the B0 base network found by the MnasNet search (MBConv blocks with
  squeeze-and-excitation, SiLU/"swish"); section 3.3: compound scaling, depth ``alpha ** phi``, width
  ``beta ** phi``, resolution ``gamma ** phi`` (alpha 1.2, beta 1.1, gamma 1.15), rounded per variant
  as in the authors' code (table below). Channels ``make_divisible(c * width, 8)``, blocks per stage
  ``ceil(n * depth)``; the last 1x1 conv has 4x the last stage's channels (1280 for B0).
* Tan & Le. "EfficientNetV2: Smaller Models and Faster Training", ICML 2021, arXiv:2104.00298.
  Table 4 (V2-S); V2-M / V2-L as the authors' code and torchvision. Fused-MBConv in the early stages
  (``zoo.blocks.InvertedResidual(fused=True)``), last 1x1 conv 1280.
* Squeeze-and-excitation in every MBConv: squeeze to ``max(1, C_in // 4)`` (a quarter of the block's
  INPUT channels), SiLU, sigmoid gate. Stochastic depth: the residual branch of block ``i`` (0-based,
  counted over the whole network, ``N`` blocks) is dropped with probability
  ``stochastic_depth_prob * i / N`` in train mode (``zoo.blocks.drop_path``, the ``'dropout'`` rng).
* BatchNorm as torchvision: B0-B4 PyTorch defaults (eps 1e-5, momentum 0.1: Flax ``bn_momentum`` 0.9),
  B5-B7 eps 1e-3 and PyTorch momentum 0.01 (Flax 0.99), V2 eps 1e-3. Dropout before the classifier
  0.2 (B0, B1, V2-S), 0.3 (B2, B3, V2-M), 0.4 (B4, B5, V2-L), 0.5 (B6, B7). Every default can be overridden.

Names follow torchvision: ``features_0_0`` / ``features_0_1`` (stem conv, BN), ``features_i_j`` block
``j`` of stage ``i`` (``features_1_0/block_0_0`` ..., SE ``features_2_0/block_2/fc1``),
``features_{N+1}_0`` (last 1x1 conv), ``classifier_1``.

Named features (``zoo.features``): ``stem`` (``features_0``, stride 2), ``stage1`` .. ``stageN`` (the
output of ``features_i``: the rows of the stage table, N = 7, 6 for V2-S), ``last_conv``,
``pre_logits`` (the pooled vector fed to the classifier).
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax

from zoo.blocks import InvertedResidual
from zoo.checks import check_choice, check_positive, check_rate
from zoo.layers import InputSpec, Ops, ZooModel, global_avg_pool, make_divisible, tap
from zoo.registry import Family, register

PAPER = ("Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks, ICML 2019 "
         "(arXiv:1905.11946); torchvision")
PAPER_V2 = "Tan & Le, EfficientNetV2: Smaller Models and Faster Training, ICML 2021 (arXiv:2104.00298); torchvision"

# Stage tables, torchvision's MBConvConfig / FusedMBConvConfig rows: (block, expansion ratio, kernel,
# stride of the first block, input channels, output channels, blocks). Stem: a 3x3/2 conv to the first
# row's input channels.
# Tan & Le 2019, Table 1 (EfficientNet-B0), stages 2-8; stage 1 is the stem, stage 9 conv 1x1 + pool + FC.
B0 = (
    ("mbconv", 1, 3, 1, 32, 16, 1),    # 112x112
    ("mbconv", 6, 3, 2, 16, 24, 2),    # 56x56
    ("mbconv", 6, 5, 2, 24, 40, 2),    # 28x28
    ("mbconv", 6, 3, 2, 40, 80, 3),    # 14x14
    ("mbconv", 6, 5, 1, 80, 112, 3),   # 14x14
    ("mbconv", 6, 5, 2, 112, 192, 4),  # 7x7
    ("mbconv", 6, 3, 1, 192, 320, 1),  # 7x7
)
# Tan & Le 2021, Table 4 (EfficientNetV2-S); SE 0.25 in the MBConv stages.
V2_S = (
    ("fused", 1, 3, 1, 24, 24, 2),
    ("fused", 4, 3, 2, 24, 48, 4),
    ("fused", 4, 3, 2, 48, 64, 4),
    ("mbconv", 4, 3, 2, 64, 128, 6),
    ("mbconv", 6, 3, 1, 128, 160, 9),
    ("mbconv", 6, 3, 2, 160, 256, 15),
)
# EfficientNetV2-M and -L (the authors' code, torchvision).
V2_M = (
    ("fused", 1, 3, 1, 24, 24, 3),
    ("fused", 4, 3, 2, 24, 48, 5),
    ("fused", 4, 3, 2, 48, 80, 5),
    ("mbconv", 4, 3, 2, 80, 160, 7),
    ("mbconv", 6, 3, 1, 160, 176, 14),
    ("mbconv", 6, 3, 2, 176, 304, 18),
    ("mbconv", 6, 3, 1, 304, 512, 5),
)
V2_L = (
    ("fused", 1, 3, 1, 32, 32, 4),
    ("fused", 4, 3, 2, 32, 64, 7),
    ("fused", 4, 3, 2, 64, 96, 7),
    ("mbconv", 4, 3, 2, 96, 192, 10),
    ("mbconv", 6, 3, 1, 192, 224, 19),
    ("mbconv", 6, 3, 2, 224, 384, 25),
    ("mbconv", 6, 3, 1, 384, 640, 7),
)
STAGES = {"v1": B0, "v2_s": V2_S, "v2_m": V2_M, "v2_l": V2_L}
LAST_CHANNEL = {"v1": None, "v2_s": 1280, "v2_m": 1280, "v2_l": 1280}  # None: 4 x the last stage's channels

# torchvision's classifier init: U(-1/sqrt(classes), 1/sqrt(classes)), bias zeros.
classifier_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")


class EfficientNet(ZooModel):
    """EfficientNet (``arch='v1'``: B0's stages scaled by ``width_mult`` / ``depth_mult``) and
    EfficientNetV2 (``arch='v2_s' | 'v2_m' | 'v2_l'``), torchvision layout.

    x: (B, H, W, 3), H, W >= 32 (global average pooling before the classifier).
    width_mult / depth_mult: channels ``make_divisible(c * width_mult, 8)``, blocks ``ceil(n * depth_mult)``
    (torchvision scales only V1; 1.0 for V2). dropout: before ``classifier_1``.
    stochastic_depth_prob: the drop-path rate of the last block (rising linearly from 0 over the blocks).
    """

    arch: str = "v1"
    width_mult: float = 1.0
    depth_mult: float = 1.0
    dropout: float = 0.2
    stochastic_depth_prob: float = 0.2

    def check_options(self):
        check_choice("arch", self.arch, STAGES)
        check_positive("width_mult", self.width_mult)
        check_positive("depth_mult", self.depth_mult)
        check_rate("dropout", self.dropout)
        check_rate("stochastic_depth_prob", self.stochastic_depth_prob)

    def input_spec(self):
        return InputSpec(self.in_channels, min_size=32)

    def stages(self) -> list[tuple]:
        """The stage table with channels and depths scaled: ``(block, expansion, kernel, stride, in, out, blocks)``."""
        ch = lambda c: make_divisible(c * self.width_mult, 8)  # noqa: E731  torchvision's adjust_channels
        return [(b, t, k, s, ch(cin), ch(cout), int(math.ceil(n * self.depth_mult)))
                for b, t, k, s, cin, cout, n in STAGES[self.arch]]

    def forward(self, x, ops: Ops):  # x: (B, H, W, C), checked
        stages = self.stages()
        x = ops.conv_norm_act(x, stages[0][4], 3, strides=2, act=nn.silu, conv_name="features_0_0",
                              norm_name="features_0_1")  # (B, H/2, W/2, C0)
        x = tap(self, "stem", x)
        total, block_id = sum(stage[-1] for stage in stages), 0
        for i, (block, t, k, s, _, out, n) in enumerate(stages, start=1):
            for j in range(n):
                inp = x.shape[-1]
                x = InvertedResidual(out, make_divisible(inp * t, 8), ops, kernel=k, strides=s if j == 0 else 1,
                                     act=nn.silu, se_channels=None if block == "fused" else max(1, inp // 4),
                                     se_act=nn.silu, se_gate=jax.nn.sigmoid, fused=block == "fused",
                                     drop_path=self.stochastic_depth_prob * block_id / total,
                                     name=f"features_{i}_{j}")(x)
                block_id += 1
            x = tap(self, f"stage{i}", x)
        last = len(stages) + 1
        x = ops.conv_norm_act(x, LAST_CHANNEL[self.arch] or 4 * x.shape[-1], 1, act=nn.silu,
                              conv_name=f"features_{last}_0", norm_name=f"features_{last}_1")
        x = tap(self, "last_conv", x)
        x = tap(self, "pre_logits", global_avg_pool(x))  # (B, last conv channels)
        x = ops.dropout(x, self.dropout)
        return ops.dense(x, self.num_classes, kernel_init=classifier_init, bias_init=nn.initializers.zeros,
                         name="classifier_1")


# ----------------------------------------------------------------------------- variants
# Compound scaling per variant (the authors' efficientnet_params; torchvision), with torchvision's
# input size (its B2 weights use 288; the authors' B2 resolution is 260) and the evaluation resize of
# its default weights' transforms (resize the short side, then centre-crop the input size):
#
#   variant   width  depth  input  resize  dropout   BatchNorm (PyTorch terms)
#   b0        1.0    1.0    224    256     0.2       eps 1e-5, momentum 0.1
#   b1        1.0    1.1    240    255     0.2       eps 1e-5, momentum 0.1
#   b2        1.1    1.2    288    288     0.3       eps 1e-5, momentum 0.1
#   b3        1.2    1.4    300    320     0.3       eps 1e-5, momentum 0.1
#   b4        1.4    1.8    380    384     0.4       eps 1e-5, momentum 0.1
#   b5        1.6    2.2    456    456     0.4       eps 1e-3, momentum 0.01
#   b6        1.8    2.6    528    528     0.5       eps 1e-3, momentum 0.01
#   b7        2.0    3.1    600    600     0.5       eps 1e-3, momentum 0.01
#   v2_s      -      -      384    384     0.2       eps 1e-3, momentum 0.1
#   v2_m      -      -      480    480     0.3       eps 1e-3, momentum 0.1
#   v2_l      -      -      480    480     0.4       eps 1e-3, momentum 0.1
#
# Figures: torchvision's weight metadata (../shared/reference.md), MACs at the input size.
EFFICIENTNET = Family("efficientnet", paper=PAPER, head=("classifier_1",), weights_layout="torchvision")
EFFICIENTNET_V2 = Family("efficientnet", paper=PAPER_V2, head=("classifier_1",), weights_layout="torchvision")
TF_BN = dict(bn_epsilon=1e-3, bn_momentum=0.99)  # B5-B7 (weights ported from TensorFlow)
V2_BN = dict(bn_epsilon=1e-3)


def _defaults(kwargs: dict, **defaults) -> dict:
    """The variant's defaults, which the caller's ``kwargs`` override (torchvision lets ``dropout`` and
    the norm be chosen per call)."""
    return {**defaults, **kwargs}


@register(EFFICIENTNET, params=5_288_548, macs=0.386e9, input_size=224, resize_size=256)
def efficientnet_b0(**kwargs) -> EfficientNet:
    return EfficientNet(width_mult=1.0, depth_mult=1.0, **_defaults(kwargs, dropout=0.2))


@register(EFFICIENTNET, params=7_794_184, macs=0.687e9, input_size=240, resize_size=255)
def efficientnet_b1(**kwargs) -> EfficientNet:
    return EfficientNet(width_mult=1.0, depth_mult=1.1, **_defaults(kwargs, dropout=0.2))


@register(EFFICIENTNET, params=9_109_994, macs=1.088e9, input_size=288, resize_size=288)
def efficientnet_b2(**kwargs) -> EfficientNet:
    return EfficientNet(width_mult=1.1, depth_mult=1.2, **_defaults(kwargs, dropout=0.3))


@register(EFFICIENTNET, params=12_233_232, macs=1.827e9, input_size=300, resize_size=320)
def efficientnet_b3(**kwargs) -> EfficientNet:
    return EfficientNet(width_mult=1.2, depth_mult=1.4, **_defaults(kwargs, dropout=0.3))


@register(EFFICIENTNET, params=19_341_616, macs=4.394e9, input_size=380, resize_size=384)
def efficientnet_b4(**kwargs) -> EfficientNet:
    return EfficientNet(width_mult=1.4, depth_mult=1.8, **_defaults(kwargs, dropout=0.4))


@register(EFFICIENTNET, params=30_389_784, macs=10.266e9, input_size=456, resize_size=456)
def efficientnet_b5(**kwargs) -> EfficientNet:
    return EfficientNet(width_mult=1.6, depth_mult=2.2, **_defaults(kwargs, dropout=0.4, **TF_BN))


@register(EFFICIENTNET, params=43_040_704, macs=19.068e9, input_size=528, resize_size=528)
def efficientnet_b6(**kwargs) -> EfficientNet:
    return EfficientNet(width_mult=1.8, depth_mult=2.6, **_defaults(kwargs, dropout=0.5, **TF_BN))


@register(EFFICIENTNET, params=66_347_960, macs=37.746e9, input_size=600, resize_size=600)
def efficientnet_b7(**kwargs) -> EfficientNet:
    return EfficientNet(width_mult=2.0, depth_mult=3.1, **_defaults(kwargs, dropout=0.5, **TF_BN))


@register(EFFICIENTNET_V2, params=21_458_488, macs=8.366e9, input_size=384, resize_size=384)
def efficientnet_v2_s(**kwargs) -> EfficientNet:
    return EfficientNet(arch="v2_s", **_defaults(kwargs, dropout=0.2, **V2_BN))


@register(EFFICIENTNET_V2, params=54_139_356, macs=24.582e9, input_size=480, resize_size=480)
def efficientnet_v2_m(**kwargs) -> EfficientNet:
    return EfficientNet(arch="v2_m", **_defaults(kwargs, dropout=0.3, **V2_BN))


@register(EFFICIENTNET_V2, params=118_515_272, macs=56.08e9, input_size=480, resize_size=480)
def efficientnet_v2_l(**kwargs) -> EfficientNet:
    return EfficientNet(arch="v2_l", **_defaults(kwargs, dropout=0.4, **V2_BN))
