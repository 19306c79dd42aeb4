"""The concatenating multi-branch block, written once: parallel branches on one input, each a chain
of conv and pooling steps, their outputs concatenated along channels. GoogLeNet's and Inception v3's
Inception modules are such blocks (Szegedy et al. 2015, fig. 2b; 2016, figs. 5-7), and so is
SqueezeNet's fire expand layer (Iandola et al. 2016, fig. 1: a 1x1 and a 3x3 expand side by side).

A block is data: a :class:`Concat` of branches of :class:`Conv` / :class:`Pool` steps (frozen,
hashable), so a family's table reads as its network::

    INCEPTION_A = Concat((
        (Conv("branch1x1", 64, 1),),
        (Conv("branch5x5_1", 48, 1), Conv("branch5x5_2", 64, 5, padding=2)),
        (AVG_3x3, Conv("branch_pool", 32, 1)),
    ))
    x = run(ops, x, INCEPTION_A)                          # inside a compact method: (B, H, W, 64 + 64 + 32)

A :class:`Conv` step becomes a layer through a ``unit`` (default :func:`basic_conv`, torchvision's
``BasicConv2d``: a sub-module named after the step holding ``conv`` without bias and ``bn``, then
ReLU); SqueezeNet passes a conv-with-bias + ReLU unit. The layers belong to the module whose compact
method calls :func:`run` (``Mixed_5b/branch5x5_1/conv``), or to :class:`MultiBranch` when a block is
its own module (``inception3a/branch2_0/bn``). A :class:`Concat` may itself be a step of a branch
(Inception v3's expanded-filter-bank module, fig. 7, splits a branch into a 1x3 and a 3x1 conv).

Padding is PyTorch's ``Conv2d`` default, 0, unless the step says otherwise (torchvision's
``BasicConv2d`` passes it through); pooling is ``nn.MaxPool2d`` / ``F.avg_pool2d`` (average pools
count the zero padding, as PyTorch's default does).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo.checks import check_choice
from zoo.layers import Ops, avg_pool

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Conv:
    """One conv step: module ``name``, ``features`` output channels, ``kernel`` (``k`` or ``(kh, kw)``),
    ``strides``, ``padding`` (``p`` or ``(ph, pw)``, symmetric; PyTorch's default 0)."""

    name: str
    features: int
    kernel: int | tuple[int, int]
    strides: int = 1
    padding: int | tuple[int, int] = 0


@dataclasses.dataclass(frozen=True)
class Pool:
    """A pooling step: ``kind`` 'max' | 'avg', ``window``, ``stride``, ``padding``, ``ceil_mode`` (max)."""

    kind: str
    window: int
    stride: int
    padding: int = 0
    ceil_mode: bool = False

    def __post_init__(self):
        check_choice("kind", self.kind, ("max", "avg"))

    def __call__(self, x: Array, ops: Ops) -> Array:  # x: (B, H, W, C)
        if self.kind == "max":
            return ops.max_pool(x, self.window, self.stride, self.padding, ceil_mode=self.ceil_mode)
        return avg_pool(x, self.window, self.stride, self.padding)


@dataclasses.dataclass(frozen=True)
class Concat:
    """Parallel ``branches`` (each a tuple of steps applied in order) on one input, their outputs
    concatenated along channels in branch order."""

    branches: tuple[tuple["Step", ...], ...]


Step = Union[Conv, Pool, Concat]
Unit = Callable[[Ops, Array, Conv], Array]


class BasicConv(nn.Module):
    """torchvision's ``BasicConv2d``: ``conv`` (no bias) -> ``bn`` -> ReLU, for one :class:`Conv` step."""

    step: Conv
    ops: Ops

    @nn.compact
    def __call__(self, x):  # x: (B, H, W, C_in) -> (B, H', W', step.features)
        s = self.step
        return self.ops.conv_norm_act(x, s.features, s.kernel, strides=s.strides, padding=s.padding,
                                      conv_name="conv", norm_name="bn")


def basic_conv(ops: Ops, x: Array, step: Conv) -> Array:
    """The default unit: a :class:`BasicConv` module named ``step.name``."""
    return BasicConv(step, ops, name=step.name)(x)


def run(ops: Ops, x: Array, step: Step, unit: Unit = basic_conv) -> Array:
    """Apply ``step`` to ``x: (B, H, W, C)``: a conv through ``unit``, a pooling, or a :class:`Concat`
    (every branch on ``x``, outputs concatenated along channels). Call inside a compact method."""
    if isinstance(step, Conv):
        return unit(ops, x, step)
    if isinstance(step, Pool):
        return step(x, ops)
    outs = []
    for branch in step.branches:
        y = x
        for s in branch:
            y = run(ops, y, s, unit)
        outs.append(y)
    return jnp.concatenate(outs, axis=-1)


class MultiBranch(nn.Module):
    """A :class:`Concat` block as its own module (GoogLeNet's ``inception3a``, Inception v3's ``Mixed_5b``)."""

    block: Concat
    ops: Ops
    unit: Unit = basic_conv

    @nn.compact
    def __call__(self, x):  # x: (B, H, W, C_in) -> (B, H', W', sum of the branches' channels)
        return run(self.ops, x, self.block, self.unit)
