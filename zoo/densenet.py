"""DenseNet-BC (torchvision): densenet121 / 161 / 169 / 201.

* Huang, Liu, van der Maaten, Weinberger. "Densely Connected Convolutional Networks", CVPR 2017,
  arXiv:1608.06993. Table 1 (ImageNet architectures: layers per dense block, growth rate k = 32,
  densenet161: k = 48 and 96 initial features); section 3: composite function BN-ReLU-Conv,
  bottleneck layers (1x1 conv to 4k channels, "B") and compression 0.5 in the transitions ("C").
* Memory: Pleiss et al. "Memory-Efficient Implementation of DenseNets", arXiv:1707.06990
  (torchvision's ``memory_efficient``; here ``remat=True``: each dense layer under ``nn.remat``).

Layout, as torchvision's ``features`` Sequential::

    conv0 7x7/2 -> norm0 -> relu -> maxpool 3x3/2              (stem, stride 4)
    denseblock1 -> transition1 -> ... -> transition3 -> denseblock4
    norm5 -> relu -> global average pool -> classifier

A dense layer maps the concatenation of every earlier output of its block to ``growth_rate`` new
channels: norm1 -> relu -> conv1 (1x1, bn_size * growth_rate) -> norm2 -> relu -> conv2 (3x3,
growth_rate) -> dropout. A transition halves channels and resolution: norm -> relu -> conv (1x1)
-> 2x2/2 average pool.

Names follow torchvision: ``features_conv0``, ``features_norm0``,
``features_denseblock1/denselayer1/{norm1,conv1,norm2,conv2}``,
``features_transition1/{norm,conv}``, ``features_norm5``, ``classifier``.
Named features (``zoo.features``): ``stem`` (after pool0, stride 4), ``denseblock1`` ...
``denseblock4`` (each block's concatenated output, strides 4, 8, 16, 32), ``norm5`` (output of
the final norm, torchvision's ``features`` output, before its ReLU), ``pre_logits`` (the pooled
vector fed to ``classifier``).

Init as torchvision: kaiming_normal (fan_in, ReLU gain) convs, BatchNorm 1 / 0, ``nn.Linear`` default
weight with bias 0.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from zoo.checks import check_bool, check_positive_int, check_positive_ints, check_rate
from zoo.layers import InputSpec, Ops, ZooModel, avg_pool, global_avg_pool, kaiming_normal_fan_in, tap
from zoo.registry import Family, register

PAPER = "Huang et al., Densely Connected Convolutional Networks, CVPR 2017 (arXiv:1608.06993); torchvision DenseNet-BC"

# Table 1 of the paper (DenseNet-BC; densenet161 as torchvision): growth rate k, dense layers per block,
# channels of conv0. The variants below read their row.
CONFIGS = {
    121: dict(growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64),
    161: dict(growth_rate=48, block_config=(6, 12, 36, 24), num_init_features=96),
    169: dict(growth_rate=32, block_config=(6, 12, 32, 32), num_init_features=64),
    201: dict(growth_rate=32, block_config=(6, 12, 48, 32), num_init_features=64),
}


class DenseLayer(nn.Module):
    """Bottleneck dense layer (BN-ReLU-Conv1x1-BN-ReLU-Conv3x3), torchvision's ``_DenseLayer``.

    Takes the tuple of the block's feature maps so far (each ``(B, H, W, C_i)``) and concatenates
    them itself, so that under ``nn.remat`` the concatenation is recomputed, not stored (as in
    torchvision's ``memory_efficient``). Returns ``(B, H, W, growth_rate)``.
    """

    growth_rate: int
    bn_size: int
    dropout: float
    ops: Ops

    @nn.compact
    def __call__(self, inputs: Sequence[jnp.ndarray]):
        ops = self.ops
        x = jnp.concatenate(inputs, axis=-1) if len(inputs) > 1 else inputs[0]
        x = nn.relu(ops.norm(x, name="norm1"))
        bias = ops.norm_kind is None  # every conv here feeds a norm; without norms they carry a bias instead
        x = ops.conv(x, self.bn_size * self.growth_rate, 1, use_bias=bias, name="conv1")
        x = nn.relu(ops.norm(x, name="norm2"))
        x = ops.conv(x, self.growth_rate, 3, use_bias=bias, name="conv2")
        return ops.dropout(x, self.dropout)


class DenseBlock(nn.Module):
    """``num_layers`` dense layers ``denselayer1..N``; output: the input concatenated with every
    layer's new features, ``C_in + num_layers * growth_rate`` channels."""

    num_layers: int
    growth_rate: int
    bn_size: int
    dropout: float
    ops: Ops
    remat: bool = False

    @nn.compact
    def __call__(self, x):  # x: (B, H, W, C_in)
        layer_cls = nn.remat(DenseLayer) if self.remat else DenseLayer
        features = [x]
        for i in range(self.num_layers):
            layer = layer_cls(self.growth_rate, self.bn_size, self.dropout, self.ops, name=f"denselayer{i + 1}")
            features.append(layer(tuple(features)))
        return jnp.concatenate(features, axis=-1)


class Transition(nn.Module):
    """norm -> relu -> 1x1 conv (``features`` channels) -> 2x2/2 average pool."""

    features: int
    ops: Ops

    @nn.compact
    def __call__(self, x):
        x = nn.relu(self.ops.norm(x, name="norm"))
        x = self.ops.conv(x, self.features, 1, use_bias=self.ops.norm_kind is None, name="conv")
        return avg_pool(x, 2, 2)


class DenseNet(ZooModel):
    """DenseNet-BC, torchvision layout.

    x: (B, H, W, 3), H, W >= 32 (adaptive average pooling before ``classifier``).
    growth_rate: k. block_config: dense layers per block. num_init_features: channels of conv0.
    bn_size: bottleneck width factor (bn_size * k channels after conv1). dropout: rate after each
    dense layer (torchvision's ``drop_rate``). remat: rematerialise each dense layer in the backward
    pass (``nn.remat`` / ``jax.checkpoint``): same outputs and gradients, less activation memory.
    Transitions compress by 0.5 (``num_features // 2``). With ``norm=None`` the convs carry biases
    instead of the norms that follow them (as ``Ops.conv_norm_act`` does).
    """

    growth_rate: int = 32
    block_config: Sequence[int] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    dropout: float = 0.0
    remat: bool = False

    def check_options(self):
        check_positive_int("growth_rate", self.growth_rate)
        check_positive_ints("block_config", self.block_config)  # dense layers per block
        check_positive_int("num_init_features", self.num_init_features)
        check_positive_int("bn_size", self.bn_size)
        check_rate("dropout", self.dropout)
        check_bool("remat", self.remat)

    def input_spec(self):
        # total stride: 4 (stem) * 2 per transition
        return InputSpec(self.in_channels, min_size=4 * 2 ** (len(self.block_config) - 1))

    def ops(self, train: bool, **overrides) -> Ops:
        return super().ops(train, conv_init=kaiming_normal_fan_in, **overrides)

    def forward(self, x, ops: Ops):  # x: (B, H, W, C), checked
        x = ops.conv_norm_act(x, self.num_init_features, 7, strides=2, conv_name="features_conv0",
                              norm_name="features_norm0")
        x = tap(self, "stem", ops.max_pool(x, 3, 2, padding=1))
        num_features = self.num_init_features
        for i, num_layers in enumerate(self.block_config):
            x = DenseBlock(num_layers, self.growth_rate, self.bn_size, self.dropout, ops, self.remat,
                           name=f"features_denseblock{i + 1}")(x)
            x = tap(self, f"denseblock{i + 1}", x)
            num_features += num_layers * self.growth_rate
            if i != len(self.block_config) - 1:
                num_features //= 2
                x = Transition(num_features, ops, name=f"features_transition{i + 1}")(x)
        x = tap(self, "norm5", ops.norm(x, name="features_norm5"))
        x = tap(self, "pre_logits", global_avg_pool(nn.relu(x)))  # (B, num_features)
        return ops.dense(x, self.num_classes, bias_init=nn.initializers.zeros, name="classifier")


# ----------------------------------------------------------------------------- variants
# Figures: torchvision's weight metadata.
DENSENET = Family("densenet", paper=PAPER, head=("classifier",), input_size=224, weights_layout="torchvision")


@register(DENSENET, params=7_978_856, macs=2.834e9)
def densenet121(**kwargs) -> DenseNet:
    return DenseNet(**CONFIGS[121], **kwargs)


@register(DENSENET, params=28_681_000, macs=7.728e9)
def densenet161(**kwargs) -> DenseNet:
    return DenseNet(**CONFIGS[161], **kwargs)


@register(DENSENET, params=14_149_480, macs=3.36e9)
def densenet169(**kwargs) -> DenseNet:
    return DenseNet(**CONFIGS[169], **kwargs)


@register(DENSENET, params=20_013_928, macs=4.291e9)
def densenet201(**kwargs) -> DenseNet:
    return DenseNet(**CONFIGS[201], **kwargs)
