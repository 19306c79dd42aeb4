"""Candidate changes to shared code, applied as in-process patches so that they can be measured
with the real train step BEFORE anyone edits ``zoo/layers.py``: ``bench.py --experiment NAME`` and
``profile_step.py --experiment NAME`` call :func:`apply` in the worker before the model is built.

``dw``, ``im2col_small`` and ``im2col_small_dw_1x1vjp`` were measured here first and are now the
CPU path (``zoo.convs.cpu_conv_general_dilated``; benchmarks/README.md); ``lax`` restores XLA's convolution
everywhere (the code before that change) so that the two can still be compared.

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
"""
from __future__ import annotations

import math

from jax import lax

from zoo.convs import conv_im2col, cpu_conv_general_dilated, depthwise_conv_shifted


def _plain(lhs_dilation, rhs_dilation, feature_group_count, padding) -> bool:
    return (feature_group_count == 1 and all(d == 1 for d in (lhs_dilation or (1, 1)))
            and all(d == 1 for d in (rhs_dilation or (1, 1))) and not isinstance(padding, str))


def make_conv(rule: str):
    def conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
             feature_group_count=1, precision=None, **kw):
        if rule == "im2col_small_dw_1x1vjp":   # adopted: the CPU path itself
            return cpu_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                            dimension_numbers, feature_group_count, precision, **kw)
        kh, kw_, c, o = rhs.shape
        if ("dw" in rule and lhs.ndim == 4 and feature_group_count > 1 and c == 1 and o == feature_group_count
                == lhs.shape[-1] and _plain(lhs_dilation, rhs_dilation, 1, padding)):
            return depthwise_conv_shifted(lhs, rhs, window_strides, padding)
        use = rule != "lax" and _plain(lhs_dilation, rhs_dilation, feature_group_count, padding) and lhs.ndim == 4
        if use and rule != "im2col_all":
            small = math.prod(lhs.shape[1:3]) < kh * kw_
            pointwise = kh == kw_ == 1 and all(p == (0, 0) for p in padding)
            use = ("small" in rule and small) or ("cin" in rule and c <= 4) or ("1x1" in rule and pointwise)
        if use:
            return conv_im2col(lhs, rhs, window_strides, padding)
        if "barrier" in rule:
            lhs = lax.optimization_barrier(lhs)
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                                        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                        feature_group_count=feature_group_count, precision=precision, **kw)
    return conv


EXPERIMENTS = ("lax", "im2col_small", "im2col_small_cin", "im2col_all", "dw", "im2col_small_dw", "im2col_small_cin_dw",
               "im2col_small_dw_barrier", "im2col_small_dw_1x1", "im2col_small_dw_1x1vjp")


def apply(name: str) -> None:
    """Patch ``zoo.layers`` so that every ``nn.Conv`` the zoo creates uses the experiment's conv."""
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment={name!r}: allowed {EXPERIMENTS}")
    import flax.linen as nn  # noqa: PLC0415

    from zoo import layers  # noqa: PLC0415

    conv_fn = make_conv(name)

    class Conv(nn.Conv):
        def __post_init__(self):
            object.__setattr__(self, "conv_general_dilated", conv_fn)  # replaces zoo.layers' own
            super().__post_init__()

    Conv.__name__ = "Conv"  # parameter paths use the given names, never the class name
    layers.nn = _NnProxy(nn, Conv)


class _NnProxy:
    """``flax.linen`` with ``Conv`` replaced (zoo/layers.py refers to ``nn.Conv`` at call time)."""

    def __init__(self, nn, conv):
        self._nn, self.Conv = nn, conv

    def __getattr__(self, k):
        return getattr(self._nn, k)
