"""Blocks of the mobile and NAS families, each once: squeeze-and-excitation, drop-path (stochastic
depth) and the inverted residual (MBConv, fused-MBConv). MobileNetV2 / V3, MnasNet and EfficientNet
(V1 and V2) build their bodies from :class:`InvertedResidual`; they differ only in its arguments.

* Hu et al. "Squeeze-and-Excitation Networks", CVPR 2018, arXiv:1709.01507 (eq. 2-4).
* Huang et al. "Deep Networks with Stochastic Depth", ECCV 2016, arXiv:1603.09382; torchvision's
  ``StochasticDepth(p, mode="row")``.
* Sandler et al. "MobileNetV2", CVPR 2018 (the inverted residual with a linear bottleneck);
  Tan et al. "MnasNet", CVPR 2019 and Tan & Le "EfficientNet", ICML 2019 (MBConv: the same block with
  kxk depthwise kernels and optional SE); Tan & Le "EfficientNetV2", ICML 2021 (fused-MBConv: the
  expansion and the depthwise conv replaced by one regular kxk conv).

Names follow torchvision's ``nn.Sequential`` of the block (``prefix``: ``block`` in EfficientNet and
MobileNetV3, ``conv`` in MobileNetV2, ``layers`` in MnasNet): a part given as torchvision's
``Conv2dNormActivation`` takes one index with children ``_0`` (conv) and ``_1`` (norm), so
``block_1_0``; a part laid out flat (``flat``) gives the conv, the norm and its activation an index each
(MnasNet ``layers_0``, ``layers_1``, ``layers_3`` ...; MobileNetV2's projection ``conv_2``, ``conv_3``).
The SE module takes one index (``block_2/fc1``).
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax

from zoo.checks import check_choice
from zoo.layers import Array, Ops, adaptive_avg_pool

PARTS = ("expand", "depthwise", "project")


class SqueezeExcitation(nn.Module):
    """torchvision's ``SqueezeExcitation``: global average pool -> ``fc1`` (1x1 conv with bias, to
    ``squeeze_channels``) -> ``act`` -> ``fc2`` (1x1 conv with bias, back to C) -> ``gate``; the input
    scaled channel-wise by the result. torchvision's defaults are ReLU and sigmoid (Hu et al.);
    MobileNetV3 gates with hard-sigmoid, EfficientNet uses SiLU and sigmoid."""

    squeeze_channels: int
    ops: Ops
    act: Callable = nn.relu
    gate: Callable = jax.nn.sigmoid

    @nn.compact
    def __call__(self, x: Array) -> Array:  # x: (B, H, W, C)
        s = adaptive_avg_pool(x, 1)  # (B, 1, 1, C)
        s = self.act(self.ops.conv(s, self.squeeze_channels, 1, use_bias=True, name="fc1"))  # (B, 1, 1, squeeze)
        s = self.ops.conv(s, x.shape[-1], 1, use_bias=True, name="fc2")  # (B, 1, 1, C)
        return x * self.gate(s)


def drop_path(ops: Ops, x: Array, rate: float) -> Array:
    """Stochastic depth on a residual branch ``x: (B, ...)``, torchvision's ``StochasticDepth(rate,
    "row")``: in train mode each example's branch is zeroed with probability ``rate`` and the survivors
    are scaled by ``1 / (1 - rate)``; the identity in eval mode and at rate 0. The mask is drawn from the
    ``'dropout'`` rng (``rngs={'dropout': key}``), one Bernoulli per example (``nn.Dropout`` broadcast
    over every other axis). Call it inside a compact method (the module it creates belongs to the caller)."""
    if rate <= 0.0:
        return x
    return nn.Dropout(rate, broadcast_dims=tuple(range(1, x.ndim)), deterministic=not ops.train)(x)


class InvertedResidual(nn.Module):
    """The inverted residual / MBConv: [1x1 expand, act] -> kxk depthwise, act -> [SE] -> 1x1 linear
    projection, norm; the input added (after :func:`drop_path`) when ``strides == 1`` and the channels
    match. The expansion is left out when ``expanded`` equals the input channels.

    ``fused=True`` is EfficientNetV2's fused-MBConv: one regular kxk conv (strided) to ``expanded``,
    act, then the 1x1 projection; without expansion a single kxk conv, act, to ``out_channels``. No SE.

    ``se_channels``: the squeeze width (None: no SE), with ``se_act`` / ``se_gate``. ``flat``: the parts
    (of :data:`PARTS`) laid out flat rather than as ``Conv2dNormActivation`` (see the module docstring).
    """

    out_channels: int
    expanded: int
    ops: Ops
    kernel: int = 3
    strides: int = 1
    act: Callable = nn.relu6
    se_channels: int | None = None
    se_act: Callable = nn.relu
    se_gate: Callable = jax.nn.sigmoid
    fused: bool = False
    drop_path: float = 0.0
    prefix: str = "block"
    flat: tuple[str, ...] = ()

    @nn.compact
    def __call__(self, x: Array) -> Array:  # x: (B, H, W, C_in) -> (B, H / strides, W / strides, out_channels)
        for part in self.flat:
            check_choice("flat", part, PARTS)
        ops, inp, index = self.ops, x.shape[-1], [0]

        def unit(part, y, features, kernel, strides=1, groups=1, act=None):
            i = index[0]
            flat = part in self.flat
            names = (f"{self.prefix}_{i}", f"{self.prefix}_{i + 1}") if flat else \
                (f"{self.prefix}_{i}_0", f"{self.prefix}_{i}_1")
            index[0] += (2 + (act is not None)) if flat else 1
            return ops.conv_norm_act(y, features, kernel, strides=strides, groups=groups, act=act,
                                     conv_name=names[0], norm_name=names[1])

        k, s, e, y = self.kernel, self.strides, self.expanded, x
        if self.fused:  # a regular kxk conv expands; without expansion it is the whole branch
            y = unit("expand", y, e if e != inp else self.out_channels, k, s, act=self.act)  # (B, H/s, W/s, .)
        else:
            if e != inp:
                y = unit("expand", y, e, 1, act=self.act)  # (B, H, W, expanded)
            y = unit("depthwise", y, e, k, s, groups=e, act=self.act)  # (B, H/s, W/s, expanded)
            if self.se_channels is not None:
                y = SqueezeExcitation(self.se_channels, ops, self.se_act, self.se_gate,
                                      name=f"{self.prefix}_{index[0]}")(y)
                index[0] += 1
        if not (self.fused and e == inp):
            y = unit("project", y, self.out_channels, 1)  # (B, H/s, W/s, out): the linear bottleneck
        if s == 1 and inp == self.out_channels:
            return x + drop_path(ops, y, self.drop_path)
        return y
