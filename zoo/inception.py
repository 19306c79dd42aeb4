"""Inception v3, torchvision's ``Inception3``: ``inception_v3``.

* Szegedy, Vanhoucke, Ioffe, Shlens, Wojna. "Rethinking the Inception Architecture for Computer
  Vision", CVPR 2016, arXiv:1512.00567. Table 1 (the network at 299x299: a stem of plain convs, 3x
  the module of fig. 5 at 35x35, a grid reduction (fig. 10), 4x the module of fig. 6 at 17x17 with
  factorised 1x7 / 7x1 convs, a grid reduction, 2x the module of fig. 7 at 8x8 with expanded filter
  banks), section 4 (one auxiliary classifier on the 17x17 grid, fig. 8), BatchNorm after every conv.
* torchvision's ``Inception3`` (ported from the authors' TensorFlow release), whose layout, names and
  weights this follows: the module types ``InceptionA`` (fig. 5, its first tower a 5x5 conv as in the
  release), ``InceptionB`` / ``InceptionD`` (grid reductions), ``InceptionC`` (fig. 6),
  ``InceptionE`` (fig. 7), ``InceptionAux``; BN eps 0.001; dropout 0.5 before ``fc``.

Layout at 299x299 (torchvision's attribute names, which contain ``_``: ``torchvision_names`` below
keeps them whole for ``zoo.convert``)::

    Conv2d_1a_3x3 /2 -> Conv2d_2a_3x3 -> Conv2d_2b_3x3 -> maxpool 3/2 -> Conv2d_3b_1x1 -> Conv2d_4a_3x3
    -> maxpool 3/2                                                   (stem: 35x35x192)
    Mixed_5b, 5c, 5d (A)  -> Mixed_6a (B, /2) -> Mixed_6b .. 6e (C) (-> AuxLogits)
    -> Mixed_7a (D, /2) -> Mixed_7b, 7c (E) -> global average pool -> dropout -> fc

Options: ``aux_logits`` (default True, as torchvision: ``AuxLogits`` exists, runs in train mode and
sows its logits into the ``'aux_logits'`` collection, see ``zoo.auxiliary``), ``transform_input``
(default False, as ``zoo.googlenet``), ``dropout`` (0.5). Input: 299x299 by default, at least 75x75
(torchvision's minimum); the auxiliary classifier (its 5x5/3 pool, then a 5x5 conv without padding)
needs a 17x17 ``Mixed_6e`` map, i.e. an input of at least 299x299, in training (as torchvision's).
Named features: ``stem`` (35x35x192), ``mixed5`` (after Mixed_5d, 35x35x288), ``mixed6`` (after
Mixed_6e, 17x17x768), ``mixed7`` (after Mixed_7c, 8x8x2048), ``pre_logits`` (the pooled 2048-vector).

Init as torchvision: conv and linear weights ``trunc_normal_(std=0.1, a=-2, b=2)`` (``AuxLogits``'
``conv1`` std 0.01, ``fc`` 0.001; bounds in absolute units, at least 20 standard deviations: a plain
normal), BatchNorm 1 / 0, linear biases PyTorch's default.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from zoo.checks import check_rate
from zoo.auxiliary import aux_output, runs_aux
from zoo.branches import Concat, Conv, MultiBranch, Pool, basic_conv, run
from zoo.googlenet import check_aux_and_transform, transform_input
from zoo.layers import InputSpec, Ops, ZooModel, avg_pool, global_avg_pool, tap
from zoo.registry import Family, register

PAPER = ("Szegedy et al., Rethinking the Inception Architecture for Computer Vision, CVPR 2016 "
         "(arXiv:1512.00567); torchvision Inception3")

AVG_3x3 = Pool("avg", 3, 1, 1)    # F.avg_pool2d(x, 3, stride=1, padding=1) before the pool projections
MAX_3x3_2 = Pool("max", 3, 2)     # the grid reductions' pooling branch


def inception_a(pool_features: int) -> Concat:
    """Fig. 5 (35x35): 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1 (``pool_features``)."""
    return Concat((
        (Conv("branch1x1", 64, 1),),
        (Conv("branch5x5_1", 48, 1), Conv("branch5x5_2", 64, 5, padding=2)),
        (Conv("branch3x3dbl_1", 64, 1), Conv("branch3x3dbl_2", 96, 3, padding=1),
         Conv("branch3x3dbl_3", 96, 3, padding=1)),
        (AVG_3x3, Conv("branch_pool", pool_features, 1)),
    ))


def inception_b() -> Concat:
    """Grid reduction 35 -> 17 (fig. 10): 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max pool 3x3/2."""
    return Concat((
        (Conv("branch3x3", 384, 3, strides=2),),
        (Conv("branch3x3dbl_1", 64, 1), Conv("branch3x3dbl_2", 96, 3, padding=1),
         Conv("branch3x3dbl_3", 96, 3, strides=2)),
        (MAX_3x3_2,),
    ))


def inception_c(c7: int) -> Concat:
    """Fig. 6 (17x17, n = 7): 1x1 | 1x1 -> 1x7 -> 7x1 | 1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7 | avg pool -> 1x1."""
    row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
    return Concat((
        (Conv("branch1x1", 192, 1),),
        (Conv("branch7x7_1", c7, 1), Conv("branch7x7_2", c7, **row), Conv("branch7x7_3", 192, **col)),
        (Conv("branch7x7dbl_1", c7, 1), Conv("branch7x7dbl_2", c7, **col), Conv("branch7x7dbl_3", c7, **row),
         Conv("branch7x7dbl_4", c7, **col), Conv("branch7x7dbl_5", 192, **row)),
        (AVG_3x3, Conv("branch_pool", 192, 1)),
    ))


def inception_d() -> Concat:
    """Grid reduction 17 -> 8: 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max pool 3x3/2."""
    return Concat((
        (Conv("branch3x3_1", 192, 1), Conv("branch3x3_2", 320, 3, strides=2)),
        (Conv("branch7x7x3_1", 192, 1), Conv("branch7x7x3_2", 192, (1, 7), padding=(0, 3)),
         Conv("branch7x7x3_3", 192, (7, 1), padding=(3, 0)), Conv("branch7x7x3_4", 192, 3, strides=2)),
        (MAX_3x3_2,),
    ))


def inception_e() -> Concat:
    """Fig. 7 (8x8, expanded filter banks): 1x1 | 1x1 -> [1x3, 3x1] | 1x1 -> 3x3 -> [1x3, 3x1] | avg pool -> 1x1."""
    def split(prefix):  # a 1x3 and a 3x1 conv side by side, concatenated
        return Concat(((Conv(f"{prefix}a", 384, (1, 3), padding=(0, 1)),),
                       (Conv(f"{prefix}b", 384, (3, 1), padding=(1, 0)),)))
    return Concat((
        (Conv("branch1x1", 320, 1),),
        (Conv("branch3x3_1", 384, 1), split("branch3x3_2")),
        (Conv("branch3x3dbl_1", 448, 1), Conv("branch3x3dbl_2", 384, 3, padding=1), split("branch3x3dbl_3")),
        (AVG_3x3, Conv("branch_pool", 192, 1)),
    ))


# The module layout of torchvision's Inception3 after the stem (Table 1 of the paper, as released).
MIXED = {
    "Mixed_5b": inception_a(32), "Mixed_5c": inception_a(64), "Mixed_5d": inception_a(64),
    "Mixed_6a": inception_b(),
    "Mixed_6b": inception_c(128), "Mixed_6c": inception_c(160), "Mixed_6d": inception_c(160),
    "Mixed_6e": inception_c(192),
    "Mixed_7a": inception_d(),
    "Mixed_7b": inception_e(), "Mixed_7c": inception_e(),
}
TAP_AFTER = {"Mixed_5d": "mixed5", "Mixed_6e": "mixed6", "Mixed_7c": "mixed7"}
AUX_AFTER = "Mixed_6e"
AUX_MIN_MAP, AUX_MIN_INPUT = 17, 299  # AuxLogits' 5x5/3 pool then 5x5 conv need a 17x17 Mixed_6e map: input >= 299

normal_01, normal_001, normal_0001 = (nn.initializers.normal(stddev=s) for s in (0.1, 0.01, 0.001))


class InceptionAux(nn.Module):
    """``AuxLogits`` (fig. 8): 5x5/3 average pool -> ``conv0`` 1x1 (128) -> ``conv1`` 5x5 (768) -> global
    average pool -> ``fc``; convs are conv + bn + ReLU. ``placeholder_input``: called on the stand-in map of
    an input below 299 at init (``zoo.summary`` then lists its parameters without shapes or MACs)."""

    num_classes: int
    ops: Ops
    placeholder_input: bool = False

    @nn.compact
    def __call__(self, x):  # x: (B, 17, 17, 768) at 299
        ops = self.ops
        x = basic_conv(ops, avg_pool(x, 5, 3), Conv("conv0", 128, 1))             # (B, 5, 5, 128)
        x = basic_conv(dataclasses.replace(ops, conv_init=normal_001), x, Conv("conv1", 768, 5))  # (B, 1, 1, 768)
        return aux_output(self, ops.dense(global_avg_pool(x), self.num_classes, kernel_init=normal_0001, name="fc"))


class Inception3(ZooModel):
    """Inception v3, torchvision layout. x: (B, H, W, 3), H, W >= 75 (299 by default)."""

    bn_epsilon: float = 1e-3
    aux_logits: bool = True
    transform_input: bool = False
    dropout: float = 0.5

    aux_heads = ("AuxLogits",)                            # zoo.auxiliary
    torchvision_names = r"Conv2d_\w+|Mixed_\w+|branch\w+"  # module names torchvision spells with "_"

    def check_options(self):
        check_aux_and_transform(self)
        check_rate("dropout", self.dropout)

    def input_spec(self):
        return InputSpec(self.in_channels, min_size=75)

    def example_input_shape(self):
        return self.input_spec().example_shape(299)

    def ops(self, train: bool, **overrides) -> Ops:
        return super().ops(train, conv_init=normal_01, **overrides)

    def forward(self, x, ops: Ops):  # x: (B, H, W, C), checked
        if self.transform_input:
            x = transform_input(x)
        size = x.shape[1:3]
        for step in (Conv("Conv2d_1a_3x3", 32, 3, strides=2), Conv("Conv2d_2a_3x3", 32, 3),
                     Conv("Conv2d_2b_3x3", 64, 3, padding=1), MAX_3x3_2, Conv("Conv2d_3b_1x1", 80, 1),
                     Conv("Conv2d_4a_3x3", 192, 3), MAX_3x3_2):
            x = run(ops, x, step)
        x = tap(self, "stem", x)                                           # (B, 35, 35, 192) at 299
        for name, block in MIXED.items():
            x = MultiBranch(block, ops, name=name)(x)
            if name == AUX_AFTER and runs_aux(self, ops.train):
                aux_in = self._aux_input(x, size)
                InceptionAux(self.num_classes, ops, aux_in is not x, name="AuxLogits")(aux_in)
            if name in TAP_AFTER:
                x = tap(self, TAP_AFTER[name], x)
        x = tap(self, "pre_logits", global_avg_pool(x))                    # (B, 2048)
        return ops.dense(ops.dropout(x, self.dropout), self.num_classes, kernel_init=normal_01, name="fc")

    @nn.nowrap
    def _aux_input(self, x, size):
        """The Mixed_6e map ``x`` for ``AuxLogits``, which needs it at least 17x17 (input >= 299). At
        initialisation on a smaller input: a 17x17 map of zeros, since the classifier's parameters do
        not depend on the map (the model initialises from 75 px, as torchvision's builds)."""
        if min(x.shape[1:3]) >= AUX_MIN_MAP:
            return x
        if self.is_initializing():
            return jnp.zeros((x.shape[0], AUX_MIN_MAP, AUX_MIN_MAP, x.shape[-1]), x.dtype)
        raise ValueError(f"Inception3: input {size[0]}x{size[1]} is too small for the auxiliary classifier, which runs "
                         f"in training (aux_logits=True needs H, W >= {AUX_MIN_INPUT}); use aux_logits=False from 75")


# ----------------------------------------------------------------------------- variants
# Figures: torchvision's weight metadata (27,161,264 with the auxiliary classifier) and reference.md.
INCEPTION = Family("inception", paper=PAPER, head=("fc",), input_size=299, weights_layout="torchvision")


@register(INCEPTION, params=27_161_264, macs=5.713e9, resize_size=342)
def inception_v3(**kwargs) -> Inception3:
    return Inception3(**kwargs)
