"""GoogLeNet (Inception v1), torchvision's variant: ``googlenet``.

* Szegedy et al. "Going Deeper with Convolutions", CVPR 2015, arXiv:1409.4842. Table 1 (the
  Inception modules' channels: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj), fig. 2b (the
  module: four branches concatenated), fig. 3 and section 5 (two auxiliary classifiers on 4a and
  4d: 5x5/3 average pool, 1x1 conv 128, fc 1024, dropout 0.7, fc; in training their losses are
  added with weight 0.3, at inference they are discarded).
* torchvision's ``GoogLeNet``, whose layout, names and weights this follows: BatchNorm (eps 0.001)
  after every conv (``BasicConv2d``), max-pools with ``ceil_mode``, the auxiliary classifiers' pool
  an adaptive 4x4 average, dropout 0.2 before ``fc``, and the "5x5" branch a 3x3 conv (a known
  deviation kept for its weights, pytorch/vision#906).

Layout (torchvision's attribute names; ``_i`` is an index in a ``Sequential``)::

    conv1 7x7/2 -> maxpool 3/2 -> conv2 1x1 -> conv3 3x3 -> maxpool 3/2          (stem, stride 8)
    inception3a, 3b -> maxpool 3/2 -> inception4a (-> aux1) .. 4d (-> aux2), 4e -> maxpool 2/2
    inception5a, 5b -> global average pool -> dropout -> fc

An Inception module is ``zoo.branches.MultiBranch`` of four branches: ``branch1`` (1x1),
``branch2_0`` / ``branch2_1`` (1x1 reduce, 3x3), ``branch3_0`` / ``branch3_1`` (1x1 reduce, 3x3),
``branch4_1`` (after a 3x3/1 max-pool, 1x1 pool proj); each conv is ``conv`` + ``bn``.

Options: ``aux_logits`` (default True, as torchvision's constructor: the two auxiliary classifiers
exist, run in train mode and sow their logits into the ``'aux_logits'`` collection, see
``zoo.auxiliary``); ``transform_input`` (default False; torchvision turns it on with its ImageNet
weights: input normalised with ImageNet's mean and std is re-normalised to ``(x - 0.5) / 0.5``,
the range those weights were trained on); ``dropout`` (0.2), ``dropout_aux`` (0.7).
Named features: ``stem`` (after the second max-pool, 192 channels, stride 8), ``inception3``
(after 3b, 480 channels, stride 8), ``inception4`` (after 4e, 832, stride 16), ``inception5`` (after
5b, 1024, stride 32), ``pre_logits`` (the pooled 1024-vector).

Init as torchvision: conv and linear weights ``trunc_normal_(std=0.01, a=-2, b=2)`` (bounds in
absolute units, 200 standard deviations: a plain normal), BatchNorm 1 / 0, linear biases PyTorch's
default.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from zoo.auxiliary import aux_output, runs_aux
from zoo.branches import Concat, Conv, MultiBranch, Pool, basic_conv
from zoo.checks import check_bool, check_rate
from zoo.layers import InputSpec, Ops, ZooModel, adaptive_avg_pool, flatten_nchw, global_avg_pool, tap
from zoo.registry import Family, register

PAPER = "Szegedy et al., Going Deeper with Convolutions, CVPR 2015 (arXiv:1409.4842); torchvision GoogLeNet (BN)"

# Table 1 of the paper: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
TABLE1 = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}
# After which module: a max-pool (window, stride; ceil_mode) or an auxiliary classifier.
POOL_AFTER = {"inception3b": 3, "inception4e": 2}
AUX_AFTER = {"inception4a": "aux1", "inception4d": "aux2"}
TAP_AFTER = {"inception3b": "inception3", "inception4e": "inception4", "inception5b": "inception5"}

normal_001 = nn.initializers.normal(stddev=0.01)
# ImageNet's normalisation (torchvision's weights' transforms)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def inception_module(c1x1: int, c3x3_reduce: int, c3x3: int, c5x5_reduce: int, c5x5: int, pool_proj: int) -> Concat:
    """Fig. 2b with one row of Table 1, torchvision's ``Inception`` (its "5x5" branch is 3x3)."""
    return Concat((
        (Conv("branch1", c1x1, 1),),
        (Conv("branch2_0", c3x3_reduce, 1), Conv("branch2_1", c3x3, 3, padding=1)),
        (Conv("branch3_0", c5x5_reduce, 1), Conv("branch3_1", c5x5, 3, padding=1)),
        (Pool("max", 3, 1, 1, ceil_mode=True), Conv("branch4_1", pool_proj, 1)),
    ))


def transform_input(x):
    """torchvision's ``transform_input``: ``x: (B, H, W, 3)`` normalised with ImageNet's mean and std,
    re-normalised to ``(pixel - 0.5) / 0.5`` (``x * std / 0.5 + (mean - 0.5) / 0.5`` per channel)."""
    mean, std = jnp.asarray(IMAGENET_MEAN, x.dtype), jnp.asarray(IMAGENET_STD, x.dtype)
    return x * (std / 0.5) + (mean - 0.5) / 0.5


def check_aux_and_transform(model: ZooModel) -> None:
    """The options GoogLeNet and Inception v3 share: ``aux_logits`` and ``transform_input`` are bools, and
    ``transform_input`` re-normalises three ImageNet channels. One ValueError line naming the argument."""
    for arg in ("aux_logits", "transform_input"):
        check_bool(arg, getattr(model, arg))
    if model.transform_input and model.in_channels != 3:
        raise ValueError(f"transform_input=True re-normalises ImageNet RGB input: needs in_channels=3, "
                         f"got {model.in_channels}")


class InceptionAux(nn.Module):
    """Auxiliary classifier (torchvision ``InceptionAux``): adaptive 4x4 average pool -> ``conv`` 1x1 (128,
    conv + bn + ReLU) -> flatten (channel-major, as torch.flatten) -> ``fc1`` 1024 + ReLU -> dropout -> ``fc2``."""

    num_classes: int
    dropout: float
    ops: Ops

    @nn.compact
    def __call__(self, x):  # x: (B, 14, 14, 512 or 528) at 224
        ops = self.ops
        x = basic_conv(ops, adaptive_avg_pool(x, 4), Conv("conv", 128, 1))
        x = nn.relu(ops.dense(flatten_nchw(x), 1024, kernel_init=normal_001, name="fc1"))   # (B, 2048) -> 1024
        return aux_output(self, ops.dense(ops.dropout(x, self.dropout), self.num_classes, kernel_init=normal_001,
                                          name="fc2"))


class GoogLeNet(ZooModel):
    """GoogLeNet, torchvision layout. x: (B, H, W, 3), H, W >= 15 (torchvision's minimum)."""

    bn_epsilon: float = 1e-3
    aux_logits: bool = True
    transform_input: bool = False
    dropout: float = 0.2
    dropout_aux: float = 0.7

    aux_heads = ("aux1", "aux2")  # top-level modules of the auxiliary classifiers (zoo.auxiliary)

    def check_options(self):
        check_aux_and_transform(self)
        check_rate("dropout", self.dropout)
        check_rate("dropout_aux", self.dropout_aux)

    def input_spec(self):
        return InputSpec(self.in_channels, min_size=15)

    def ops(self, train: bool, **overrides) -> Ops:
        return super().ops(train, conv_init=normal_001, **overrides)

    def forward(self, x, ops: Ops):  # x: (B, H, W, C), checked
        if self.transform_input:
            x = transform_input(x)
        x = basic_conv(ops, x, Conv("conv1", 64, 7, strides=2, padding=3))
        x = ops.max_pool(x, 3, 2, ceil_mode=True)
        x = basic_conv(ops, x, Conv("conv2", 64, 1))
        x = basic_conv(ops, x, Conv("conv3", 192, 3, padding=1))
        x = tap(self, "stem", ops.max_pool(x, 3, 2, ceil_mode=True))      # (B, 28, 28, 192) at 224
        aux_inputs = {}
        for name, row in TABLE1.items():
            x = MultiBranch(inception_module(*row), ops, name=name)(x)
            if name in AUX_AFTER:
                aux_inputs[AUX_AFTER[name]] = x                            # (B, 14, 14, 512 / 528) at 224
            if name in TAP_AFTER:
                x = tap(self, TAP_AFTER[name], x)
            if name in POOL_AFTER:
                x = ops.max_pool(x, POOL_AFTER[name], 2, ceil_mode=True)
        if runs_aux(self, ops.train):  # created here, after inception5b, as torchvision declares them (its key order)
            for aux, h in aux_inputs.items():
                InceptionAux(self.num_classes, self.dropout_aux, ops, name=aux)(h)
        x = tap(self, "pre_logits", global_avg_pool(x))                    # (B, 1024)
        return ops.dense(ops.dropout(x, self.dropout), self.num_classes, kernel_init=normal_001, name="fc")


# ----------------------------------------------------------------------------- variants
# Figures: torchvision's weight metadata (6,624,904 without the auxiliary classifiers) and reference.md.
GOOGLENET = Family("googlenet", paper=PAPER, head=("fc",), input_size=224, weights_layout="torchvision")


@register(GOOGLENET, params=13_004_888, macs=1.498e9)
def googlenet(**kwargs) -> GoogLeNet:
    return GoogLeNet(**kwargs)
