"""MobileNet v1 (Keras / paper), MobileNetV2 and MobileNetV3 (torchvision).

* Howard et al. "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
  Applications", arXiv:1704.04861 (2017). Table 1 (body: a 3x3/2 conv then 13 depthwise separable
  blocks, 3x3 depthwise + BN + ReLU then 1x1 pointwise + BN + ReLU), section 3.3 (width multiplier
  alpha: every layer's channels ``int(c * alpha)`` as in the reference Keras implementation),
  Table 6 (alpha 1.0 / 0.75 / 0.5 / 0.25: 4.2M / 2.6M / 1.3M / 0.5M parameters, 569 / 325 / 149 / 41
  million mult-adds). Activations are ReLU6, BatchNorm eps 1e-3 / Keras momentum 0.99 and dropout
  1e-3 before the classifier, as the authors' TF-slim and the Keras ``MobileNet`` implementations.
* Sandler et al. "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018,
  arXiv:1801.04381. Table 2 (``inverted_residual_setting``: expansion t, channels c, repeats n,
  stride s), ReLU6, linear bottlenecks.
* Howard et al. "Searching for MobileNetV3", ICCV 2019, arXiv:1905.02244. Tables 1 (large) and 2
  (small): kernel, expansion, output channels, squeeze-excitation, activation (RE: ReLU, HS:
  hard-swish), stride; section 5.2 (SE: squeeze to ``make_divisible(C // 4, 8)``, hard-sigmoid gate).

Names: MobileNetV2 / V3 follow torchvision (``features_0_0``, ``features_1/conv_0_0``,
``features_4/block_2/fc1``, ``classifier_1``, ``classifier_3``); MobileNet v1, which torchvision
lacks, follows the Keras reference implementation (``conv1``, ``conv1_bn``, ``conv_dw_1``,
``conv_dw_1_bn``, ``conv_pw_1``, ``conv_pw_1_bn``, ``conv_preds``: a 1x1 conv on the pooled 1x1
map in Keras, here the equivalent dense layer, kernel ``(1, 1, in, out) -> (in, out)``; Keras'
depthwise kernels ``(3, 3, C, 1)`` become ``(3, 3, 1, C)``). Keras pads its stride-2 convs
TF-style (0 before, 1 after); here, as everywhere in the zoo, padding is PyTorch's symmetric 1: same
output sizes, but Keras weights would see a one-pixel shift on those layers.

Named features (``zoo.features``):

* ``mobilenet_v1*``: ``stem`` (conv1, 112x112 at 224), ``block1``, ``block3``, ``block5``,
  ``block11``, ``block13`` (the last depthwise separable block at each resolution, Table 1:
  112, 56, 28, 14, 7), ``pre_logits``.
* ``mobilenet_v2``: ``stem`` (features_0), ``block1``, ``block3``, ``block6``, ``block13``, ``block17``
  (the output of ``features_i``, the last block at strides 2, 4, 8, 16, 32), ``last_conv`` (the
  final 1x1 conv ``features_18``, 1280 channels), ``pre_logits``.
* ``mobilenet_v3_large``: ``stem``, ``block1``, ``block3``, ``block6``, ``block12``, ``block15``
  (strides 2 .. 32), ``last_conv`` (``features_16``, 960 channels), ``pre_logits`` (the 1280-vector
  after ``classifier_0`` + hard-swish, fed to ``classifier_3``).
* ``mobilenet_v3_small``: ``stem``, ``block1``, ``block3``, ``block8``, ``block11`` (strides 4 .. 32),
  ``last_conv`` (``features_12``, 576 channels), ``pre_logits`` (1024-vector).

V2 and V3 blocks are ``zoo.blocks.InvertedResidual`` (shared with MnasNet and EfficientNet).
For V2 / V3 ``block{i}`` is the output of ``features_i``, tapped when the next block downsamples
(torchvision's ``_is_cn``) or it is the last block.
"""
from __future__ import annotations

import flax.linen as nn

from zoo.blocks import InvertedResidual
from zoo.checks import check_choice, check_positive, check_positive_int, check_rate
from zoo.layers import InputSpec, Ops, ZooModel, global_avg_pool, hard_sigmoid, hard_swish, make_divisible, tap
from zoo.registry import Family, register

PAPER_V1 = ("Howard et al., MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications, "
            "2017 (arXiv:1704.04861); Keras MobileNet")
PAPER_V2 = ("Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR 2018 (arXiv:1801.04381); "
            "torchvision")
PAPER_V3 = "Howard et al., Searching for MobileNetV3, ICCV 2019 (arXiv:1905.02244); torchvision"

# Keras' initialisers (MobileNet v1): glorot_uniform kernels (Conv2D, DepthwiseConv2D, the conv_preds classifier).
glorot_uniform = nn.initializers.xavier_uniform()
# torchvision MobileNetV2 / V3 classifier: nn.init.normal_(weight, 0, 0.01), bias zeros.
linear_normal_001 = nn.initializers.normal(stddev=0.01)


def _last_at_its_resolution(strides, i: int) -> bool:
    """Block ``i`` (1-based) of blocks with these ``strides`` is tapped: the next one downsamples, or it
    is the last (torchvision's ``_is_cn`` rule)."""
    return i == len(strides) or strides[i] > 1


# ----------------------------------------------------------------------------- MobileNet v1

# Table 1 of the paper, after the first 3x3/2 conv (32 channels): the 13 depthwise separable blocks as
# (pointwise output channels, depthwise stride). Output sizes at 224: 112, 56, 56, 28, 28, 14 (x6), 7, 7.
# (The paper's last row prints "Conv dw / s2" but its input and output are both 7x7: stride 1, as in
# every implementation.)
V1_STEM_CHANNELS = 32
V1_BLOCKS = (
    (64, 1),
    (128, 2), (128, 1),
    (256, 2), (256, 1),
    (512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)


class MobileNetV1(ZooModel):
    """MobileNet v1, Keras ``MobileNet`` layout (``depth_multiplier`` 1).

    x: (B, H, W, 3), H, W >= 32 (global average pooling before the classifier).
    width_mult: alpha, every layer has ``int(c * width_mult)`` channels (must be > 0 and leave the
    32-channel stem at least one channel). dropout: rate before the classifier (Keras 1e-3).
    BatchNorm defaults are Keras' (eps 1e-3, momentum 0.99).
    """

    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    width_mult: float = 1.0
    dropout: float = 1e-3

    def check_options(self):
        check_positive("width_mult", self.width_mult)
        if int(V1_STEM_CHANNELS * self.width_mult) < 1:
            raise ValueError(f"width_mult={self.width_mult!r}: must be >= 1/32 so that every layer keeps at least "
                             f"one channel (channels = int(c * width_mult))")
        check_rate("dropout", self.dropout)

    def input_spec(self):
        return InputSpec(self.in_channels, min_size=32)

    def channels(self, c: int) -> int:
        return int(c * self.width_mult)

    def ops(self, train: bool, **overrides) -> Ops:
        return super().ops(train, conv_init=glorot_uniform, **overrides)

    def forward(self, x, ops: Ops):  # x: (B, H, W, C), checked
        x = ops.conv_norm_act(x, self.channels(V1_STEM_CHANNELS), 3, strides=2, act=nn.relu6,
                              conv_name="conv1", norm_name="conv1_bn")
        x = tap(self, "stem", x)
        for i, (c, s) in enumerate(V1_BLOCKS, start=1):
            x = ops.conv_norm_act(x, x.shape[-1], 3, strides=s, groups=x.shape[-1], act=nn.relu6,
                                  conv_name=f"conv_dw_{i}", norm_name=f"conv_dw_{i}_bn")
            x = ops.conv_norm_act(x, self.channels(c), 1, act=nn.relu6, conv_name=f"conv_pw_{i}",
                                  norm_name=f"conv_pw_{i}_bn")
            if _last_at_its_resolution([stride for _, stride in V1_BLOCKS], i):
                x = tap(self, f"block{i}", x)
        x = tap(self, "pre_logits", global_avg_pool(x))  # (B, int(1024 * width_mult))
        x = ops.dropout(x, self.dropout)
        return ops.dense(x, self.num_classes, kernel_init=glorot_uniform, bias_init=nn.initializers.zeros,
                         name="conv_preds")


# ----------------------------------------------------------------------------- MobileNetV2

# Table 2 of the paper: t (expansion), c (output channels), n (repeats), s (stride of the first repeat),
# after the first 3x3/2 conv (32 channels); the final 1x1 conv has 1280 channels.
V2_STEM_CHANNELS = 32
V2_LAST_CHANNEL = 1280
V2_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(ZooModel):
    """MobileNetV2, torchvision layout.

    x: (B, H, W, 3), H, W >= 32 (adaptive average pooling before the classifier).
    width_mult: channel multiplier (> 0), channels ``make_divisible(c * width_mult, round_nearest)``;
    the last conv keeps ``make_divisible(1280 * max(1, width_mult))``. dropout: before ``classifier_1``.
    """

    width_mult: float = 1.0
    round_nearest: int = 8
    dropout: float = 0.2


    def check_options(self):
        check_positive("width_mult", self.width_mult)
        check_positive_int("round_nearest", self.round_nearest)
        check_rate("dropout", self.dropout)

    def input_spec(self):
        return InputSpec(self.in_channels, min_size=32)

    def forward(self, x, ops: Ops):  # x: (B, H, W, C), checked
        ch = lambda c: make_divisible(c * self.width_mult, self.round_nearest)  # noqa: E731
        x = ops.conv_norm_act(x, ch(V2_STEM_CHANNELS), 3, strides=2, act=nn.relu6, conv_name="features_0_0",
                              norm_name="features_0_1")
        x = tap(self, "stem", x)
        blocks = [(t, ch(c), s if i == 0 else 1) for t, c, n, s in V2_SETTING for i in range(n)]
        for idx, (t, c, s) in enumerate(blocks, start=1):
            # names conv_0_0 (expand, t != 1), conv_k_0 (3x3 depthwise), then conv_{k+1} / conv_{k+2}: the
            # projection conv and its norm sit flat in torchvision's Sequential
            x = InvertedResidual(c, int(round(x.shape[-1] * t)), ops, strides=s, act=nn.relu6, prefix="conv",
                                 flat=("project",), name=f"features_{idx}")(x)
            if _last_at_its_resolution([stride for _, _, stride in blocks], idx):
                x = tap(self, f"block{idx}", x)
        last = len(blocks) + 1
        x = ops.conv_norm_act(x, make_divisible(V2_LAST_CHANNEL * max(1.0, self.width_mult), self.round_nearest), 1,
                              act=nn.relu6, conv_name=f"features_{last}_0", norm_name=f"features_{last}_1")
        x = tap(self, "last_conv", x)
        x = tap(self, "pre_logits", global_avg_pool(x))  # (B, 1280)
        x = ops.dropout(x, self.dropout)
        return ops.dense(x, self.num_classes, kernel_init=linear_normal_001, bias_init=nn.initializers.zeros,
                         name="classifier_1")


# ----------------------------------------------------------------------------- MobileNetV3

# Tables 1 and 2 of the paper, torchvision's bneck_conf rows:
# (input_channels, kernel, expanded_channels, out_channels, use_se, activation, stride).
V3_SETTINGS = {
    "large": (
        (16, 3, 16, 16, False, "RE", 1),
        (16, 3, 64, 24, False, "RE", 2),  # C1
        (24, 3, 72, 24, False, "RE", 1),
        (24, 5, 72, 40, True, "RE", 2),  # C2
        (40, 5, 120, 40, True, "RE", 1),
        (40, 5, 120, 40, True, "RE", 1),
        (40, 3, 240, 80, False, "HS", 2),  # C3
        (80, 3, 200, 80, False, "HS", 1),
        (80, 3, 184, 80, False, "HS", 1),
        (80, 3, 184, 80, False, "HS", 1),
        (80, 3, 480, 112, True, "HS", 1),
        (112, 3, 672, 112, True, "HS", 1),
        (112, 5, 672, 160, True, "HS", 2),  # C4
        (160, 5, 960, 160, True, "HS", 1),
        (160, 5, 960, 160, True, "HS", 1),
    ),
    "small": (
        (16, 3, 16, 16, True, "RE", 2),  # C1
        (16, 3, 72, 24, False, "RE", 2),  # C2
        (24, 3, 88, 24, False, "RE", 1),
        (24, 5, 96, 40, True, "HS", 2),  # C3
        (40, 5, 240, 40, True, "HS", 1),
        (40, 5, 240, 40, True, "HS", 1),
        (40, 5, 120, 48, True, "HS", 1),
        (48, 5, 144, 48, True, "HS", 1),
        (48, 5, 288, 96, True, "HS", 2),  # C4
        (96, 5, 576, 96, True, "HS", 1),
        (96, 5, 576, 96, True, "HS", 1),
    ),
}
V3_LAST_CHANNEL = {"large": 1280, "small": 1024}  # C5: width of classifier_0


class MobileNetV3(ZooModel):
    """MobileNetV3-Large / -Small, torchvision layout.

    x: (B, H, W, 3), H, W >= 32 (adaptive average pooling before the classifier).
    arch: 'large' | 'small'. width_mult: channel multiplier (> 0), channels
    ``make_divisible(c * width_mult, 8)`` (classifier_0 width included). dropout: between
    ``classifier_0`` + hard-swish and ``classifier_3``. BatchNorm defaults are torchvision's for V3:
    eps 1e-3, PyTorch momentum 0.01 (Flax ``bn_momentum`` 0.99).
    """

    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    arch: str = "large"
    width_mult: float = 1.0
    dropout: float = 0.2

    def check_options(self):
        check_choice("arch", self.arch, V3_SETTINGS)
        check_positive("width_mult", self.width_mult)
        check_rate("dropout", self.dropout)

    def input_spec(self):
        return InputSpec(self.in_channels, min_size=32)

    def forward(self, x, ops: Ops):  # x: (B, H, W, C), checked
        ch = lambda c: make_divisible(c * self.width_mult, 8)  # noqa: E731  torchvision's adjust_channels
        setting = V3_SETTINGS[self.arch]
        x = ops.conv_norm_act(x, ch(setting[0][0]), 3, strides=2, act=hard_swish, conv_name="features_0_0",
                              norm_name="features_0_1")
        x = tap(self, "stem", x)
        for idx, (_, k, exp, out, se, act, s) in enumerate(setting, start=1):
            # bneck: names block_0, ...; SE (section 5.2) squeezes to make_divisible(exp // 4, 8), hard-sigmoid gate
            x = InvertedResidual(ch(out), ch(exp), ops, kernel=k, strides=s, act=hard_swish if act == "HS" else nn.relu,
                                 se_channels=make_divisible(ch(exp) // 4, 8) if se else None, se_gate=hard_sigmoid,
                                 name=f"features_{idx}")(x)
            if _last_at_its_resolution([row[6] for row in setting], idx):
                x = tap(self, f"block{idx}", x)
        last = len(setting) + 1
        x = ops.conv_norm_act(x, 6 * x.shape[-1], 1, act=hard_swish, conv_name=f"features_{last}_0",
                              norm_name=f"features_{last}_1")
        x = tap(self, "last_conv", x)
        x = global_avg_pool(x)
        x = hard_swish(ops.dense(x, ch(V3_LAST_CHANNEL[self.arch]), kernel_init=linear_normal_001,
                                 bias_init=nn.initializers.zeros, name="classifier_0"))
        x = tap(self, "pre_logits", x)
        x = ops.dropout(x, self.dropout)
        return ops.dense(x, self.num_classes, kernel_init=linear_normal_001, bias_init=nn.initializers.zeros,
                         name="classifier_3")


# ----------------------------------------------------------------------------- variants
# MobileNet v1 (Keras layout, no torchvision counterpart): Table 6 of the paper (width multiplier);
# 1.0 has the exact Keras trainable count. V2 / V3: torchvision's weight metadata.
MOBILENET_V1 = Family("mobilenet", paper=PAPER_V1, head=("conv_preds",), input_size=224)
MOBILENET = Family("mobilenet", paper=PAPER_V2, head=("classifier_1",), input_size=224, weights_layout="torchvision")


@register(MOBILENET_V1, params=4_231_976, macs=0.569e9)
def mobilenet_v1(**kwargs) -> MobileNetV1:
    return MobileNetV1(**kwargs)  # width_mult=1.0, an option (Table 6: 0.75, 0.5, 0.25)


@register(MOBILENET_V1, params_approx="2.6M", macs=0.325e9, paper=PAPER_V1 + ", Table 6")
def mobilenet_v1_x0_75(**kwargs) -> MobileNetV1:
    return MobileNetV1(width_mult=0.75, **kwargs)


@register(MOBILENET_V1, params_approx="1.3M", macs=0.149e9, paper=PAPER_V1 + ", Table 6")
def mobilenet_v1_x0_5(**kwargs) -> MobileNetV1:
    return MobileNetV1(width_mult=0.5, **kwargs)


@register(MOBILENET_V1, params_approx="0.5M", macs=0.041e9, paper=PAPER_V1 + ", Table 6")
def mobilenet_v1_x0_25(**kwargs) -> MobileNetV1:
    return MobileNetV1(width_mult=0.25, **kwargs)


@register(MOBILENET, params=3_504_872, macs=0.301e9)
def mobilenet_v2(**kwargs) -> MobileNetV2:
    return MobileNetV2(**kwargs)


@register(MOBILENET, params=5_483_032, macs=0.217e9, head=("classifier_3",), paper=PAPER_V3)
def mobilenet_v3_large(**kwargs) -> MobileNetV3:
    return MobileNetV3(arch="large", **kwargs)


@register(MOBILENET, params=2_542_856, macs=0.057e9, head=("classifier_3",), paper=PAPER_V3)
def mobilenet_v3_small(**kwargs) -> MobileNetV3:
    return MobileNetV3(arch="small", **kwargs)
