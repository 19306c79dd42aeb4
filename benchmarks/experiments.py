"""Candidate changes to shared code, applied as in-process patches so that they can be measured
with the real train step BEFORE anyone edits ``zoo/layers.py``: ``bench.py --experiment NAME`` and
``profile_step.py --experiment NAME`` call :func:`apply` in the worker before the model is built.

``dw``, ``im2col_small``, ``im2col_small_dw_1x1vjp`` and ``cond_barrier_vjp_s1x1`` were measured here
first and are now the CPU path (``zoo.convs.cpu_conv_general_dilated``, which the last two call, so both
run the current CPU path; benchmarks/README.md); ``lax`` restores XLA's convolution everywhere (the
code before those changes) so that the two can still be compared.

Each experiment is the exact code proposed for ``zoo.layers.Ops.conv``: ``flax.linen.Conv`` accepts
a ``conv_general_dilated`` callable (same signature as ``lax.conv_general_dilated``) and keeps its
parameters (``kernel`` HWIO, ``bias``) unchanged, so checkpoints and weight conversion are unaffected.

* ``lax``: every convolution as one ``lax.conv_general_dilated`` (no rewrite).
* ``im2col_small``: a convolution whose input is spatially smaller than its kernel
  (``H * W < kh * kw``; e.g. ResNet's 3x3 convs on 2x2 and 1x1 maps at 32x32 input) is computed as
  im2col + one matmul (``zoo.convs.conv_im2col``). XLA's algebraic simplifier swaps the operands of such a convolution (the
  activation becomes the "kernel"), the result has a non-canonical layout
  (``dim_labels=01fb_o01i->f01b``) that neither the Eigen nor the YNNPACK/XNNPACK convolution paths
  take, and XLA:CPU then runs a naive loop: ~0.5 GMAC/s instead of ~20-40.
* ``im2col_small_cin``: ``im2col_small`` plus convolutions with few input channels (``C_in <= 4``:
  first layers on RGB / grey images).
* ``im2col_all``: every ungrouped convolution as im2col + matmul (a bound, not a proposal).
* ``dw``: depthwise convolutions (MobileNet, ShuffleNet) as the sum of kh*kw shifted slices times
  per-channel weights (``zoo.convs.depthwise_conv_shifted``). XLA:CPU runs the backward-input of a strided
  depthwise conv (an ``lhs_dilation`` conv) and depthwise convs on maps smaller than the kernel in
  its naive loop emitter (~0.03 GMAC/s).
* ``im2col_small_dw``, ``im2col_small_cin_dw``: the combinations.
* ``im2col_small_dw_1x1``: the CPU path before the 1x1 change (``im2col_small_dw``) plus every
  unpadded 1x1 convolution as a (strided
  slice +) reshape + one matmul (``conv_im2col`` with a 1x1 kernel). Their kernel gradient is then a
  dot, which YNNPACK takes without the batch-minor transposes Eigen's convolution needs.
* ``im2col_small_dw_1x1vjp``: ``im2col_small_dw`` plus every unpadded stride-1 1x1 convolution as
  ``zoo.convs.pointwise_conv_dot_grads``: XLA's convolution forward (eval unchanged), both
  gradients as matmuls. Adopted (2026-11-30): it is now ``zoo.convs.cpu_conv_general_dilated``
  itself, which this experiment calls.
* ``im2col_small_dw_barrier``: the CPU path before the 1x1 change (``im2col_small_dw``) with the input of every
  remaining ``lax`` convolution behind ``lax.optimization_barrier``. XLA lays out the input of a
  kernel-gradient convolution batch-minor (``f32[C,H,W,B]``) for Eigen and fuses that transpose with
  every elementwise producer it can reach, recomputing chains of BatchNorm / residual add / ReLU of
  several blocks per element in a strided loop (ResNet-50 train at 224: ~70% of op time). The barrier
  was meant to make the transpose read one materialised array. Dropped (2026-11-30): the barriers
  reach the lowered program (105 in ResNet-50's train step) but XLA:CPU expands them before fusing,
  the same recomputing transpose fusions come out, and the step is no faster (benchmarks/README.md).
* ``dw_autodiff``: the CPU path with the depthwise convolutions' gradient left to autodiff, as it was
  before Round 13 (``zoo.convs.depthwise_shifted_sum`` differentiated as written). XLA:CPU then copies
  each tap's slice of the input for the kernel gradient's YNNPACK reduction already in the forward
  pass, recomputing the input's BatchNorm / ReLU6 in each copy, and keeps all of them until the
  backward pass (MobileNet-V2 b16 224: 140 copies, 1.2 GB of the step's 2.3 GB temporary buffer).
  The current path (``zoo.convs.depthwise_conv_shifted``'s ``custom_vjp``) materialises the input
  once through a conditional on the incoming gradient and copies the taps in the backward pass.
  Measured first and dropped (2026-12-01): the same ``custom_vjp`` without the conditional (the
  copies were still formed in the forward pass: the temporary buffer unchanged at 2,275 MiB), and
  with the taps' reductions chained through ``lax.optimization_barrier`` (also unchanged: XLA:CPU
  expands barriers before it schedules).
* ``dense_buffer``: the CPU path with each DenseNet block written into one buffer of its final width
  (each layer reads a slice and its new channels are written in place by ``dynamic_update_slice``)
  instead of concatenating every earlier output anew in every layer (O(L) copies per block, not
  O(L^2); training too). Dropped (2026-12-01): DenseNet-121 b16 224 eval's concatenations were 56 ms
  of op time per step and the buffer saved ~34 ms of it, but the wall time stayed level (613 against
  608 ms, ten alternating rounds in one process); the train step's op time rose 6% and its peak RSS
  10-13% (benchmarks/README.md, "Round 14").
* ``bn_autodiff``: the CPU path with BatchNorm as it was before Round 25: training differentiated by
  autodiff through flax's statistics and normalisation (not ``zoo.batchnorm.batch_norm_train``'s
  closed-form gradient), and the statistics averaged over a mapped axis of one device too (a stack
  and an all-reduce per layer in the train step).
* ``kgrad_taps``, ``kgrad_im2col``: the CPU path plus every other plain ungrouped convolution (3x3,
  7x7, strided 1x1) as :func:`conv_dot_kernel_grad`: XLA's convolution forward and input gradient,
  the kernel gradient as matmuls over NHWC rows (one per tap, or one over the im2col columns), so
  that no batch-minor transpose feeds an Eigen kernel-gradient convolution. Dropped (2026-11-30):
  ResNet-18 train at 224 10.5 -> 7.4 / 7.8 img/s, ResNet-50 3.8 -> 3.4 / 3.6 (benchmarks/README.md,
  "Round 4").
* ``cond_barrier``, ``cond_barrier_vjp``, ``cond_barrier_vjp_s1x1``: the input of every other plain
  ungrouped convolution (``_s1x1``: of strided 1x1 convolutions only) through
  ``zoo.convs.materialised`` (a ``lax.cond`` on a runtime predicate, which XLA cannot fuse through,
  unlike ``optimization_barrier``): the batch-minor transposes for Eigen's kernel gradients then read
  one materialised activation instead of recomputing its BatchNorm / residual / ReLU producers.
  ``_vjp``: only under ``jax.grad`` (``zoo.convs.materialised_for_grad``), so evaluation is
  untouched. Measured on the CPU path before the shortcut change (which they now call, so their
  strided 1x1 inputs pass two conditionals). All convolutions: ResNet-50 train at 224 3.4-3.6 -> 3.9-4.2 img/s, DenseNet-121 mixed
  (3.2-3.8 against 3.6-4.0), ResNet-18 / VGG level within noise. ``_s1x1`` (ResNet's downsampling
  shortcuts, whose input is the residual chain of every block before): ResNet-50 3.5-3.9 -> 4.2,
  ResNet-18 level; adopted (2026-11-30): it is now ``zoo.convs.cpu_conv_general_dilated`` itself,
  which that experiment calls (benchmarks/README.md, "Round 4").
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from zoo.convs import (conv_im2col, cpu_conv_general_dilated, depthwise_conv_shifted, depthwise_shifted_sum,
                       materialised, materialised_for_grad, shifted_slices)


def _plain(lhs_dilation, rhs_dilation, feature_group_count, padding) -> bool:
    return (feature_group_count == 1 and all(d == 1 for d in (lhs_dilation or (1, 1)))
            and all(d == 1 for d in (rhs_dilation or (1, 1))) and not isinstance(padding, str))


def make_conv(rule: str):
    def conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
             feature_group_count=1, precision=None, **kw):
        kh, kw_, c, o = rhs.shape
        plain = lhs.ndim == 4 and _plain(lhs_dilation, rhs_dilation, feature_group_count, padding)
        small = math.prod(lhs.shape[1:3]) < kh * kw_
        unpadded_1x1 = kh == kw_ == 1 and all(tuple(p) == (0, 0) for p in padding)
        depthwise = (lhs.ndim == 4 and feature_group_count > 1 and c == 1 and o == feature_group_count == lhs.shape[-1]
                     and _plain(lhs_dilation, rhs_dilation, 1, padding))
        if rule in ("kgrad_taps", "kgrad_im2col", "cond_barrier", "cond_barrier_vjp") and plain and not small and not (
                unpadded_1x1 and tuple(window_strides) == (1, 1)):   # what the CPU path leaves to lax
            if rule.startswith("kgrad"):
                return conv_dot_kernel_grad(lhs, rhs, window_strides, padding, taps=rule == "kgrad_taps")
            lhs = materialised(lhs) if rule == "cond_barrier" else materialised_for_grad(lhs)
        if rule == "dw_autodiff" and depthwise:   # the depthwise gradient left to autodiff (before Round 13)
            return depthwise_shifted_sum(lhs, rhs, window_strides, padding)
        if rule in ("im2col_small_dw_1x1vjp", "cond_barrier_vjp_s1x1", "kgrad_taps", "kgrad_im2col", "cond_barrier",
                    "cond_barrier_vjp", "dw_autodiff",
                    "dense_buffer", "bn_autodiff"):   # the CPU path itself (with the experiment's change above)
            return cpu_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                            dimension_numbers, feature_group_count, precision, **kw)
        if "dw" in rule and depthwise:
            return depthwise_conv_shifted(lhs, rhs, window_strides, padding)
        use = rule != "lax" and plain
        if use and rule != "im2col_all":
            use = ("small" in rule and small) or ("cin" in rule and c <= 4) or ("1x1" in rule and unpadded_1x1)
        if use:
            return conv_im2col(lhs, rhs, window_strides, padding)
        if "barrier" in rule:
            lhs = lax.optimization_barrier(lhs)
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                                        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                        feature_group_count=feature_group_count, precision=precision, **kw)
    return conv


def _conv(x, kernel, strides, padding):
    return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv_dot_kernel_grad(x: jax.Array, kernel: jax.Array, strides, padding, taps: bool = True) -> jax.Array:
    """Ungrouped conv ``x: (B, H, W, C)``, ``kernel: (kh, kw, C, O)``: XLA's convolution forward and
    input gradient; the kernel gradient as matmuls over the ``B*Ho*Wo`` rows of each tap's shifted
    slice (``taps``: one ``(C, O)`` dot per tap) or of their concatenation (im2col: one dot)."""
    return _conv_dkg(x, kernel, tuple(strides), tuple(tuple(p) for p in padding), taps)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_dkg(x, kernel, strides, padding, taps):
    return _conv(x, kernel, strides, padding)


def _conv_dkg_fwd(x, kernel, strides, padding, taps):
    return _conv(x, kernel, strides, padding), (x, kernel)


def _conv_dkg_bwd(strides, padding, taps, res, g):
    x, kernel = res
    kh, kw, c, o = kernel.shape
    acc = jnp.promote_types(x.dtype, jnp.float32)
    dx = jax.vjp(lambda x_: _conv(x_, kernel, strides, padding), x)[1](g)[0]
    g2 = g.reshape(-1, o)                                                   # (B*Ho*Wo, O)
    slices = shifted_slices(x, kh, kw, strides, padding)                    # kh*kw x (B, Ho, Wo, C)
    if taps:
        dk = jnp.stack([jnp.dot(t.reshape(-1, c).T, g2, preferred_element_type=acc) for t in slices])
    else:
        cols = jnp.concatenate(slices, axis=-1).reshape(-1, kh * kw * c)
        dk = jnp.dot(cols.T, g2, preferred_element_type=acc)
    return dx, dk.astype(kernel.dtype).reshape(kernel.shape)


_conv_dkg.defvjp(_conv_dkg_fwd, _conv_dkg_bwd)


EXPERIMENTS = ("lax", "im2col_small", "im2col_small_cin", "im2col_all", "dw", "im2col_small_dw", "im2col_small_cin_dw",
               "im2col_small_dw_barrier", "im2col_small_dw_1x1", "im2col_small_dw_1x1vjp",
               "kgrad_taps", "kgrad_im2col", "cond_barrier",
               "cond_barrier_vjp", "cond_barrier_vjp_s1x1", "dw_autodiff", "dense_buffer", "bn_autodiff")


def apply(name: str) -> None:
    """Patch ``zoo.layers`` so that every ``nn.Conv`` the zoo creates uses the experiment's conv (and, for
    ``dense_buffer`` and ``bn_autodiff``, DenseNet's blocks and every BatchNorm the way the experiment says)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment={name!r}: allowed {EXPERIMENTS}")
    import flax.linen as nn  # noqa: PLC0415

    from zoo import layers  # noqa: PLC0415

    if name == "dense_buffer":
        _dense_blocks_in_one_buffer()
    if name == "bn_autodiff":
        _batchnorm_by_autodiff()
    conv_fn = make_conv(name)

    class Conv(nn.Conv):
        def __post_init__(self):
            object.__setattr__(self, "conv_general_dilated", conv_fn)  # replaces zoo.layers' own
            super().__post_init__()

    Conv.__name__ = "Conv"  # parameter paths use the given names, never the class name
    layers.nn = _NnProxy(nn, Conv)


def _batchnorm_by_autodiff() -> None:
    """``zoo.layers`` builds BatchNorms that train through flax's code and average over every mapped axis."""
    from zoo import batchnorm, layers  # noqa: PLC0415

    class BatchNorm(batchnorm.BatchNorm):   # the class name: flax names unnamed layers after it
        def _statistics_axis(self, x):
            return self.axis_name if not self.is_initializing() else None

        def _paper_gradient(self, x, mask, feature_axes) -> bool:
            return False

    layers.BatchNorm = BatchNorm


class _NnProxy:
    """``flax.linen`` with ``Conv`` replaced (zoo/layers.py refers to ``nn.Conv`` at call time)."""

    def __init__(self, nn, conv):
        self._nn, self.Conv = nn, conv

    def __getattr__(self, k):
        return getattr(self._nn, k)


def _dense_blocks_in_one_buffer() -> None:
    """``dense_buffer``: each DenseNet block writes its layers' outputs into one buffer of the block's
    final width (``dynamic_update_slice``) and each layer reads a slice of it, instead of concatenating
    every earlier output anew in every layer (O(L) copies per block instead of O(L^2))."""
    import flax.linen as nn  # noqa: PLC0415

    from zoo import densenet  # noqa: PLC0415

    class DenseBlock(densenet.DenseBlock):
        @nn.compact
        def __call__(self, x):  # x: (B, H, W, C_in)
            layer_cls = nn.remat(densenet.DenseLayer) if self.remat else densenet.DenseLayer
            c0, g = x.shape[-1], self.growth_rate
            buf = jnp.pad(x, ((0, 0),) * 3 + ((0, self.num_layers * g),))   # (B, H, W, C_in + L g)
            for i in range(self.num_layers):
                layer = layer_cls(g, self.bn_size, self.dropout, self.ops, name=f"denselayer{i + 1}")
                y = layer((buf[..., :c0 + i * g],))
                buf = lax.dynamic_update_slice_in_dim(buf, y.astype(buf.dtype), c0 + i * g, axis=3)
            return buf

    DenseBlock.__name__ = "DenseBlock"
    densenet.DenseBlock = DenseBlock
