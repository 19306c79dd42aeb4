"""BatchNorm with the running variance of the paper and of PyTorch, and its analytic gradient.

Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing Internal
Covariate Shift" (ICML 2015), Algorithm 2, step 10: inference uses ``Var[x] = m / (m - 1) *
E_B[sigma_B^2]``, the unbiased estimate over mini-batches of ``m`` values. PyTorch's ``BatchNorm2d``
(whose weights the zoo converts) does the same with a moving average: a batch is normalised with its
biased variance (``torch.var(x, unbiased=False)``), the running variance is updated with the
unbiased one (``torch.var(x, unbiased=True)``). ``flax.linen.BatchNorm`` updates it with the biased
variance, so in training its running variance moved towards ``(m - 1) / m`` times PyTorch's (1.6%
lower for a batch of 64 on a 1x1 map).

:class:`BatchNorm` is ``flax.linen.BatchNorm`` (same fields, parameters ``scale`` / ``bias``,
statistics ``mean`` / ``var``, same normalised outputs) with that one difference: ``m`` is every
value of a channel the statistics were taken over, on all devices of ``axis_name``. Two things
change how the same values are computed in training:

* the backward pass is the paper's (section 3; PyTorch's ``batch_norm_backward``):
  :func:`batch_norm_train`, a ``jax.custom_vjp``, instead of autodiff through each operation of
  the statistics and the normalisation. The forward values are flax's to the bit; the gradients
  agree to float rounding. It has no forward-mode derivative (``jax.jvp`` of a model in training;
  evaluation is flax's composition).
* on a mapped axis of one device the statistics are not averaged across devices (a mean over one
  participant is the value itself): no stack and all-reduce per layer.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import dtypes, module
from flax.linen.normalization import _abs_sq, _canonicalize_axes, _compute_stats, _normalize  # flax's own steps
from jax import lax
from jax.custom_derivatives import SymbolicZero


def value_count(x: jax.Array, reduction_axes, axis_name=None, axis_index_groups=None):
    """The values per channel that the statistics of ``x`` reduce over, on all devices of ``axis_name``
    (a Python int: shapes and axis sizes are static)."""
    m = 1
    for a in reduction_axes:
        m *= x.shape[a]
    return m if axis_name is None else jax.lax.psum(m, axis_name, axis_index_groups=axis_index_groups)


def bessel(x: jax.Array, reduction_axes, axis_name=None, axis_index_groups=None, mask=None):
    """``m / (m - 1)`` for the ``m`` values per channel that the statistics of ``x`` reduce over (all
    devices of ``axis_name``); 1 where ``m <= 1`` (no unbiased estimate: the biased one is kept).
    A Python float when ``m`` is static (no mask), else an array of the per-channel shape."""
    if mask is None:
        m = value_count(x, reduction_axes, axis_name, axis_index_groups)
        if isinstance(m, int):
            return m / (m - 1) if m > 1 else 1.0
    else:
        m = jnp.sum(jnp.broadcast_to(mask, x.shape), axis=reduction_axes, dtype=jnp.float32)
        if axis_name is not None:
            m = jax.lax.psum(m, axis_name, axis_index_groups=axis_index_groups)
    m = jnp.asarray(m, jnp.float32)
    return jnp.where(m > 1, m / jnp.maximum(m - 1, 1), 1.0)


# ----------------------------------------------------------------------------- training: the paper's gradient

def _varies_over(a, axis_name) -> bool | None:
    """Whether ``a``'s type says it varies over the mapped axis (``shard_map`` with ``check_vma``: a
    value of that type needs a collective to be the same on every device); None: the type does not say."""
    kind = getattr(jax.typeof(a), "manual_axis_type", None)
    if kind is None:
        return None
    return any(n in kind.varying for n in (axis_name if isinstance(axis_name, tuple) else (axis_name,)))


def _stats(x, axes, stats_dtype, axis_name, axis_index_groups):
    """flax's ``_compute_stats`` with the fast variance: ``(mean, E[x^2] - mean^2 before the clip)``."""
    xs = x.astype(stats_dtype)
    mu, mu2 = xs.mean(axes), _abs_sq(xs).mean(axes)
    if axis_name is not None:   # one all-reduce for both, as flax
        mu, mu2 = lax.pmean(jnp.stack((mu, mu2)), axis_name, axis_index_groups=axis_index_groups)
    return mu, mu2 - _abs_sq(mu)


def _normalized(x, mean, var, scale, bias, epsilon, out_dtype):
    """flax's ``_normalize`` (the same operations in the same order): ``(y, rsqrt(var + eps))``."""
    inv = lax.rsqrt(var + epsilon)
    y = (x - mean) * (inv * scale) + bias
    return jnp.asarray(y, out_dtype), inv


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6, 7, 8))
def batch_norm_train(x, scale, bias, axes, epsilon, stats_dtype, out_dtype, axis_name=None, axis_index_groups=None):
    """Batch normalisation in training, ``x: (..., C)`` over ``axes`` (every axis but the last) and
    the devices of ``axis_name``: ``(y, mean, var)`` with the biased variance, clipped at 0, as
    ``flax.linen.BatchNorm``. Its ``jax.custom_vjp`` is the closed-form gradient (Ioffe & Szegedy
    2015, section 3): ``dx = scale / sigma * (dy - mean(dy) - x_hat * mean(dy * x_hat))`` with the
    means over all devices, plus the terms of cotangents given for ``mean`` and ``var``."""
    y, mean, var, _, _ = _forward(x, scale, bias, axes, epsilon, stats_dtype, out_dtype, axis_name, axis_index_groups)
    return y, mean, var


def _forward(x, scale, bias, axes, epsilon, stats_dtype, out_dtype, axis_name, axis_index_groups):
    """``(y, mean, var, v, rsqrt(var + eps))``, ``v`` the variance before the clip at 0."""
    mean, v = _stats(x, axes, stats_dtype, axis_name, axis_index_groups)
    var = jnp.maximum(0.0, v)
    y, inv = _normalized(x, mean, var, scale, bias, epsilon, out_dtype)
    return y, mean, var, v, inv


def _bn_fwd(x, scale, bias, *static):
    x, scale, bias = x.value, scale.value, bias.value   # symbolic_zeros: CustomVJPPrimal
    y, mean, var, v, inv = _forward(x, scale, bias, *static)
    # d var / d v of jnp.maximum(0, v): 1 above 0, 1/2 at 0, 0 below (autodiff's rule)
    clip = jnp.where(v > 0, 1.0, jnp.where(v == 0, 0.5, 0.0)).astype(var.dtype)
    return (y, mean, var), (x, mean, inv, clip, scale)


def _bn_bwd(axes, epsilon, stats_dtype, out_dtype, axis_name, axis_index_groups, res, cts):
    x, mean, inv, clip, scale = res
    dy, dmean, dvar = cts   # dmean / dvar: SymbolicZero unless the statistics are differentiated
    m = value_count(x, axes, axis_name, axis_index_groups)
    xc = x.astype(stats_dtype) - mean
    x_hat = xc * inv
    g = dy.astype(stats_dtype)
    sums = [jnp.sum(g, axes), jnp.sum(g * x_hat, axes)]      # d bias, d scale (this device's parts)
    extra = [c for c in (dmean, dvar) if not isinstance(c, SymbolicZero)]
    tot = sums + extra
    if axis_name is not None:   # the means over all devices: one all-reduce
        tot = list(lax.psum(jnp.stack(tot), axis_name, axis_index_groups=axis_index_groups))
    g_bias, g_scale = tot[0], tot[1]
    dv = -0.5 * inv * inv * scale * g_scale         # d loss / d var through y: sum(g (x - mean)) s (-r^3 / 2)
    if not isinstance(dvar, SymbolicZero):
        dv = dv + tot[-1]
    dv = dv * clip
    dmu = -inv * scale * g_bias                     # d loss / d mean through the (x - mean) of y
    if not isinstance(dmean, SymbolicZero):
        dmu = dmu + tot[2]
    # var = E[x^2] - mean^2: d/dx = 2 (x - mean) / m; mean = E[x]: d/dx = 1 / m
    dx = (inv * scale) * g + dmu / m + xc * (2.0 / m * dv)
    if axis_name is not None and _varies_over(g, axis_name) and _varies_over(scale, axis_name) is False:
        sums = [g_bias, g_scale]   # checked shard_map: the gradient of a parameter the same on every device
    return dx.astype(x.dtype), sums[1].astype(scale.dtype), sums[0].astype(scale.dtype)


batch_norm_train.defvjp(_bn_fwd, _bn_bwd, symbolic_zeros=True)


# ----------------------------------------------------------------------------- the module

class BatchNorm(nn.BatchNorm):
    """``flax.linen.BatchNorm`` whose running variance is updated with the unbiased batch variance
    (PyTorch's ``BatchNorm2d``; Ioffe & Szegedy 2015, Algorithm 2), differentiated in training by
    :func:`batch_norm_train`. ``momentum`` is flax's (the weight of the old average: PyTorch's
    ``momentum=0.1`` is ``0.9`` here)."""

    @nn.compact
    def __call__(self, x, use_running_average: bool | None = None, *, mask: jax.Array | None = None):
        # x: (..., C) with the features on self.axis (NHWC: the last); the code of flax.linen.BatchNorm
        # (0.10-0.12) but for the running variance's factor and the training path's gradient
        use_running_average = module.merge_param("use_running_average", self.use_running_average,
                                                 use_running_average)
        feature_axes = _canonicalize_axes(x.ndim, self.axis)
        reduction_axes = tuple(i for i in range(x.ndim) if i not in feature_axes)
        feature_shape = [x.shape[ax] for ax in feature_axes]
        stats_dtype = jnp.float32 if self.force_float32_reductions else self.param_dtype
        ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, stats_dtype), feature_shape)
        ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, stats_dtype), feature_shape)
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
            if not self.force_float32_reductions:
                mean, var = jnp.asarray(mean, self.param_dtype), jnp.asarray(var, self.param_dtype)
            return _normalize(self, x, mean, var, reduction_axes, feature_axes, self.dtype, self.param_dtype,
                              self.epsilon, self.use_bias, self.use_scale, self.bias_init, self.scale_init,
                              self.force_float32_reductions)
        axis_name = self._statistics_axis(x)
        m = value_count(x, reduction_axes, axis_name, self.axis_index_groups) if mask is None else None
        if isinstance(m, int) and m == 1 and not self.is_initializing():
            # torchvision: "Expected more than 1 value per channel when training"; here the output
            # would be the bias alone (the image ignored) and the running variance decay towards 0
            raise ValueError(f"BatchNorm {'/'.join(map(str, self.path))} in training needs more than 1 value "
                             f"per channel, got x: {tuple(x.shape)}; train with a batch of 2 or more, or use "
                             f"train=False")
        if self._paper_gradient(x, mask, feature_axes):
            scale = self.param("scale", self.scale_init, feature_shape, self.param_dtype)
            bias = self.param("bias", self.bias_init, feature_shape, self.param_dtype)
            compute = jnp.promote_types(self.dtype or jnp.result_type(x), jnp.float32)   # flax's statistics' dtype
            out = dtypes.canonicalize_dtype(x, scale, bias, dtype=self.dtype)
            groups = None if self.axis_index_groups is None else tuple(map(tuple, self.axis_index_groups))
            y, mean, var = batch_norm_train(x, scale, bias, reduction_axes, self.epsilon, compute, out,
                                            axis_name, groups)   # static arguments: hashable
        else:
            mean, var = _compute_stats(x, reduction_axes, dtype=self.dtype, axis_name=axis_name,
                                       axis_index_groups=self.axis_index_groups,
                                       use_fast_variance=self.use_fast_variance, mask=mask,
                                       force_float32_reductions=self.force_float32_reductions)
            y = _normalize(self, x, mean, var, reduction_axes, feature_axes, self.dtype, self.param_dtype,
                           self.epsilon, self.use_bias, self.use_scale, self.bias_init, self.scale_init,
                           self.force_float32_reductions)
        if not self.is_initializing():
            factor = bessel(x, reduction_axes, axis_name, self.axis_index_groups, mask)
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * (var * factor)
        return y

    def _statistics_axis(self, x):
        """The mapped axis whose devices' statistics are averaged: none while initialising, nor on an axis
        of one device (pmap, or an unchecked shard_map such as the train step's) where the mean is the
        value itself and no type needs the collective."""
        axis_name = self.axis_name if not self.is_initializing() else None
        if (axis_name is not None and jax.lax.psum(1, axis_name, axis_index_groups=self.axis_index_groups) == 1
                and _varies_over(x, axis_name) is False):
            return None
        return axis_name

    def _paper_gradient(self, x, mask, feature_axes) -> bool:
        """Whether training takes :func:`batch_norm_train`: flax's defaults (scale and bias, the fast
        variance in float32, features last, no mask) and a real floating input; else flax's code."""
        return (not self.is_initializing() and mask is None and self.use_scale and self.use_bias
                and self.use_fast_variance and self.force_float32_reductions
                and feature_axes == (x.ndim - 1,) and jnp.issubdtype(x.dtype, jnp.floating))
