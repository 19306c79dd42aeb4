"""The classifier entry of torchvision's AlexNet and VGG: ``AdaptiveAvgPool2d(size)`` ->
``torch.flatten(x, 1)`` -> ``Linear(C * size * size, features)``, as one layer
(:class:`PooledDense`) whose parameters are exactly the ``Linear``'s (``kernel: (C*oh*ow, F)``,
``bias: (F,)``, the rows in torchvision's channel-major order), so weights convert and checkpoints
load as before.

An adaptive average pool is linear: ``pool(x)[c, i, j] = sum_{h, w} R[i, h] S[j, w] x[c, h, w]``
with ``R[i, h] = 1 / |bin_i|`` on the rows of bin ``i`` (PyTorch's bin edges, ``zoo.layers.adaptive_bins``),
likewise ``S`` for columns. So ``flatten(pool(x)) @ W = flatten(x) @ W'`` with the folded kernel

    W'[c, h, w, :] = sum_{i, j} R[i, h] S[j, w] W[c, i, j, :]

When the map is smaller than the pool's output (``H * W < oh * ow``: VGG at 32x32 input has a 1x1
map that the pool repeats 49 times) the layer computes that: reading ``W`` once to fold it costs
less than a dot ``oh * ow / (H * W)`` times larger (VGG-11 at 32x32, batch 64, on CPU: the 25088 x
4096 layer's forward 110 -> 18 ms, forward + gradients 398 -> 142 ms; benchmarks/README.md, Round 6).
Same function up to float summation order, on every backend; for maps at least as large as the
output (224x224 inputs: 7x7 / 6x6 maps) it is the literal pool -> flatten -> dot.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.layers import (Array, Ops, adaptive_avg_pool, adaptive_bins, flatten_nchw, torch_default_bias,
                        torch_default_kernel)


def fold_pool_into_kernel(kernel: Array, channels: int, size: tuple[int, int], hw: tuple[int, int]) -> Array:
    """``kernel: (C*oh*ow, F)`` of a Linear after ``adaptive_avg_pool(., size)`` of a ``(h, w)`` map ->
    the kernel ``(C*h*w, F)`` of the same map applied to ``flatten_nchw`` of the map itself (module docstring).
    Each input position sums the (weighted) kernel rows of the bins that contain it: a contiguous
    rectangle of bins, one reduction over it."""
    (oh, ow), (h, w) = size, hw
    rows, cols = adaptive_bins(h, oh), adaptive_bins(w, ow)
    weight = np.outer([1.0 / (b - a) for a, b in rows], [1.0 / (b - a) for a, b in cols])     # (oh, ow)
    k = kernel.reshape(channels, oh, ow, -1)
    if not np.all(weight == 1.0):
        k = k * jnp.asarray(weight, k.dtype)[None, :, :, None]

    def covering(bins, p):  # the bins that contain position p: contiguous
        inside = [i for i, (a, b) in enumerate(bins) if a <= p < b]
        return inside[0], inside[-1] + 1

    folded = [[k[:, slice(*covering(rows, p)), slice(*covering(cols, q))].sum(axis=(1, 2)) for q in range(w)]
              for p in range(h)]                                                           # h x w of (C, F)
    return jnp.stack([jnp.stack(r, axis=1) for r in folded], axis=1).reshape(channels * h * w, -1)


class PooledDense(nn.Dense):
    """``nn.Dense`` on ``flatten_nchw(adaptive_avg_pool(x, size))`` for ``x: (B, H, W, C)``; parameters
    those of that ``nn.Dense``. Maps smaller than ``size`` fold the pool into the kernel (module docstring)."""

    size: tuple[int, int] = (7, 7)

    @nn.compact
    def __call__(self, x: Array) -> Array:  # x: (B, H, W, C) -> (B, features)
        (oh, ow), (h, w), c = self.size, x.shape[1:3], x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (c * oh * ow, self.features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        if h * w < oh * ow:
            kernel, x = fold_pool_into_kernel(kernel, c, (oh, ow), (h, w)), flatten_nchw(x)   # (C*H*W, F), (B, C*H*W)
        else:
            x = flatten_nchw(adaptive_avg_pool(x, (oh, ow)))                                # (B, C*oh*ow)
        x, kernel, bias = self.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = jax.lax.dot_general(x, kernel, (((1,), (0,)), ((), ())), precision=self.precision)
        return y if bias is None else y + bias


def pooled_dense(ops: Ops, x: Array, size: int, features: int, *, name: str, dropout=None,
                 kernel_init=None, bias_init=None) -> Array:
    """torchvision's ``AdaptiveAvgPool2d(size) -> flatten -> [Dropout(dropout) ->] Linear(features)``
    for ``x: (B, H, W, C)``, created in the calling module as ``ops.dense`` would be (same ``name``,
    same parameters, PyTorch's ``nn.Linear`` init by default). An active dropout (train mode, a rate
    that may be non-zero) sits between pool and Linear: then the layers run as written, with the
    dropout in the calling module as before (its masks unchanged)."""
    if dropout is not None and ops.train and (isinstance(dropout, jax.Array) or dropout > 0):
        pooled = ops.dropout(flatten_nchw(adaptive_avg_pool(x, size)), dropout)
        return ops.dense(pooled, features, name=name, kernel_init=kernel_init, bias_init=bias_init)
    fan_in = x.shape[-1] * size * size
    return PooledDense(features, size=(size, size), dtype=ops.dtype, param_dtype=ops.param_dtype,
                       kernel_init=kernel_init or torch_default_kernel,
                       bias_init=bias_init or torch_default_bias(fan_in), name=name)(x)
