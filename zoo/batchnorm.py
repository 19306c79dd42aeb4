"""BatchNorm with the running variance of the paper and of PyTorch.

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
value of a channel the statistics were taken over, on all devices of ``axis_name``.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import module
from flax.linen.normalization import _canonicalize_axes, _compute_stats, _normalize  # flax's own steps


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


class BatchNorm(nn.BatchNorm):
    """``flax.linen.BatchNorm`` whose running variance is updated with the unbiased batch variance
    (PyTorch's ``BatchNorm2d``; Ioffe & Szegedy 2015, Algorithm 2). ``momentum`` is flax's (the
    weight of the old average: PyTorch's ``momentum=0.1`` is ``0.9`` here)."""

    @nn.compact
    def __call__(self, x, use_running_average: bool | None = None, *, mask: jax.Array | None = None):
        # x: (..., C) with the features on self.axis (NHWC: the last); the code of flax.linen.BatchNorm
        # (0.10-0.12) but for the running variance's factor
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
        else:
            axis_name = self.axis_name if not self.is_initializing() else None
            m = value_count(x, reduction_axes, axis_name, self.axis_index_groups) if mask is None else None
            if isinstance(m, int) and m == 1 and not self.is_initializing():
                # torchvision: "Expected more than 1 value per channel when training"; here the output
                # would be the bias alone (the image ignored) and the running variance decay towards 0
                raise ValueError(f"BatchNorm {'/'.join(map(str, self.path))} in training needs more than 1 value "
                                 f"per channel, got x: {tuple(x.shape)}; train with a batch of 2 or more, or use "
                                 f"train=False")
            mean, var = _compute_stats(x, reduction_axes, dtype=self.dtype, axis_name=axis_name,
                                       axis_index_groups=self.axis_index_groups,
                                       use_fast_variance=self.use_fast_variance, mask=mask,
                                       force_float32_reductions=self.force_float32_reductions)
            if not self.is_initializing():
                factor = bessel(x, reduction_axes, axis_name, self.axis_index_groups, mask)
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * (var * factor)
        return _normalize(self, x, mean, var, reduction_axes, feature_axes, self.dtype, self.param_dtype,
                          self.epsilon, self.use_bias, self.use_scale, self.bias_init, self.scale_init,
                          self.force_float32_reductions)
