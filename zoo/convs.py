"""Convolution (and max-pooling) implementations a model can be built with (``ZooModel.conv_impl``).

* ``'lax'``: ``jax.lax.conv_general_dilated``, XLA's convolution, on every backend (the default).
* ``'cpu'``: the same, with two kinds of convolution rewritten for XLA:CPU (below). Same parameters,
  same results up to float summation order; chosen for CPU devices by ``conv_impl_for('cpu')``.
* ``'cpu_matmul'``: ``'cpu'`` with every ungrouped convolution as im2col + one matmul (search groups
  on CPU, ``train.search``).

Models never query the backend: whoever knows the devices (the training setup, the benchmarks, the
user) passes ``conv_impl=conv_impl_for(device.platform)`` to ``zoo.create``.

XLA:CPU has fast convolutions (YNNPACK / Eigen) for the common case only. Two kinds that CNNs use a
lot fall to a naive loop there, 5-150x slower than a matmul of the same work (benchmarks/README.md,
"Where the time goes"):

* depthwise convolutions (MobileNet, ShuffleNet): the kernel gradient is computed as a dense C x C
  convolution and strided input gradients use the generic emitter;
* convolutions whose output map is smaller than the kernel (ResNet / VGG layer3-4 at 32x32, and a
  stride-2 3x3 conv from 4x4 to 2x2): the simplifier swaps the operands of the convolution or of its
  input gradient into a layout no fast path takes.

* grouped convolutions that are not depthwise (ResNeXt's 32 groups, ShuffleNet v1's grouped 1x1s,
  the 2012 AlexNet's two towers): the forward pass runs 1.1-6x slower than the groups' own
  convolutions and the gradients 110-190x slower (ResNeXt-50's 56x56 grouped 3x3: 15.3 s against
  80 ms, benchmarks/README.md "Round 11");

and one kind is slow in training only: the gradients of 1x1 convolutions (ResNet-50's bottlenecks,
MobileNet's expansions and projections, ResNet's strided downsampling shortcuts), whose
kernel-gradient convolution XLA feeds a batch-minor copy of the input, recomputing the BatchNorm /
residual / ReLU chain that produced it (for a shortcut: the residual chain of every block before it).

``'cpu'`` writes the first three with primitives XLA:CPU does well (shifted slices fused into loops,
whose kernel gradient copies the taps in the backward pass only; im2col + one matmul; ungrouped
convolutions over chunks of the groups, :func:`grouped_conv_chunks`),
gives stride-1 1x1 convolutions matmul gradients (a ``jax.custom_vjp``: reverse mode only) and,
under differentiation, hands strided 1x1 convolutions a materialised input
(:func:`materialised_for_grad`); every other convolution is ``lax.conv_general_dilated`` unchanged.
Which library runs those on XLA:CPU (Eigen rather than YNNPACK) is a compile option of the steps,
not a model choice: ``zoo.compiling.step_compile_options``; what the option cannot stop, a YNNPACK
reduction fusion of an evaluated program growing back over the convolutions before a pool, the
``'cpu'`` implementation stops by ending those convolutions with :func:`outside_library_fusions`.

Max pooling follows the same choice (``MAX_POOLS``): ``'cpu'`` runs the forward as two separable
reduce-windows (:func:`max_pool_separable`: the same maxima, fewer reads) and writes the gradient as
shifted slices (:func:`max_pool_shifted_grad`), where XLA:CPU's select-and-scatter is slow.
"""
from __future__ import annotations

import functools
import itertools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array


def _acc_dtype(dtype):
    return jnp.promote_types(dtype, jnp.float32)


def shifted_slices(x: Array, kh: int, kw: int, strides, padding, pad_value: float = 0.0) -> list[Array]:
    """The kh*kw taps of a convolution window over ``x: (B, H, W, C)``: pad (with ``pad_value``), then
    for each tap ``(i, j)`` (row-major) the strided slice ``(B, Ho, Wo, C)`` that the tap's weight multiplies."""
    (pt, pb), (pl, pr) = padding
    sh, sw = strides
    x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=pad_value)
    ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    return [x[:, i: i + sh * (ho - 1) + 1: sh, j: j + sw * (wo - 1) + 1: sw, :] for i in range(kh) for j in range(kw)]


def depthwise_conv_shifted(x: Array, kernel: Array, strides, padding) -> Array:
    """Depthwise conv, ``x: (B, H, W, C)``, ``kernel: (kh, kw, 1, C)``: the sum over the kh*kw taps of
    a strided shifted slice of the padded input times the tap's per-channel weights. Its kernel
    gradient (:func:`_depthwise_bwd`) copies the taps of ``x`` in the backward pass only."""
    return _depthwise(x, kernel, tuple(strides), tuple(tuple(p) for p in padding))


def depthwise_shifted_sum(x: Array, kernel: Array, strides, padding) -> Array:
    """:func:`depthwise_conv_shifted`'s forward pass, as a plain function: differentiated as written
    (``benchmarks/experiments.py`` ``dw_autodiff``), XLA forms the kernel gradient's tap copies in the
    forward pass and holds them (:func:`_depthwise_bwd`)."""
    kh, kw, _, _ = kernel.shape
    acc = _acc_dtype(x.dtype)
    y = None
    for t, w in zip(shifted_slices(x, kh, kw, strides, padding), kernel.reshape(kh * kw, -1)):
        t = t.astype(acc) * w.astype(acc)
        y = t if y is None else y + t
    return y.astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _depthwise(x: Array, kernel: Array, strides, padding) -> Array:
    return depthwise_shifted_sum(x, kernel, strides, padding)


def _depthwise_fwd(x, kernel, strides, padding):
    return depthwise_shifted_sum(x, kernel, strides, padding), (x, kernel)


def _depthwise_bwd(strides, padding, res, g):
    """``dx``: the transposed shifted sum (fused loops). ``dk``: per tap, the sum over ``(B, Ho, Wo)``
    of the tap's slice of ``x`` times ``g``, a YNNPACK reduction, which reads a copy of the slice. Left
    to autodiff, XLA formed those copies in the forward pass, recomputing ``x``'s producers (BatchNorm,
    ReLU6) in each, and kept all kh*kw of every layer until the backward pass: MobileNet-V2's b16 224
    train step held 1.2 GB of them (benchmarks/README.md, "Round 13"). Here ``x`` is materialised once,
    by a conditional that reads ``g`` (:func:`materialised`), so the copies exist only in the backward
    pass."""
    x, kernel = res
    kh, kw, _, _ = kernel.shape
    acc = _acc_dtype(x.dtype)
    dx = jax.vjp(lambda v: depthwise_shifted_sum(v, kernel, strides, padding), x)[1](g)[0]
    ga = g.astype(acc)
    taps = shifted_slices(materialised(x, after=g), kh, kw, strides, padding)   # kh*kw x (B, Ho, Wo, C)
    dk = jnp.stack([jnp.sum(t.astype(acc) * ga, axis=(0, 1, 2)) for t in taps])  # (kh*kw, C)
    return dx, dk.astype(kernel.dtype).reshape(kernel.shape)


_depthwise.defvjp(_depthwise_fwd, _depthwise_bwd)


def _tap_reads_input(i: int, n: int, pad_before: int, stride: int, out: int) -> bool:
    """Whether window tap ``i`` reads any of the ``n`` input rows at some output row (else only padding)."""
    return any(pad_before <= i + stride * r < pad_before + n for r in range(out))


def conv_im2col(x: Array, kernel: Array, strides, padding) -> Array:
    """Ungrouped conv, ``x: (B, H, W, C)``, ``kernel: (kh, kw, C, O)``, as pad -> the strided slices of
    the T taps that read any input (not only padding: a 3x3 conv on a 1x1 map keeps its centre tap)
    concatenated on channels ``(B, Ho, Wo, T*C)`` -> one matmul with those taps' ``(T*C, O)`` weights."""
    kh, kw, c, o = kernel.shape
    (pt, _), (pl, _) = padding
    slices = shifted_slices(x, kh, kw, strides, padding)
    ho, wo = slices[0].shape[1:3]
    live = [t for t, (i, j) in enumerate(itertools.product(range(kh), range(kw)))
            if _tap_reads_input(i, x.shape[1], pt, strides[0], ho) and _tap_reads_input(j, x.shape[2], pl, strides[1], wo)]
    cols = jnp.concatenate([slices[t] for t in live], axis=-1)                  # (B, Ho, Wo, T*C)
    w = (kernel.reshape(kh * kw * c, o) if len(live) == kh * kw                # (T*C, O); all taps: no copy
         else jnp.concatenate([kernel.reshape(kh * kw, c, o)[t] for t in live]))
    y = jnp.dot(cols.reshape(-1, len(live) * c), w, preferred_element_type=_acc_dtype(x.dtype))
    return y.astype(x.dtype).reshape(x.shape[0], ho, wo, o)


@jax.custom_vjp
def pointwise_conv_dot_grads(x: Array, kernel: Array) -> Array:
    """Unpadded stride-1 1x1 conv, ``x: (B, H, W, C)``, ``kernel: (1, 1, C, O)``: XLA's convolution
    forward, both gradients as matmuls over the ``B*H*W`` rows (``g @ K^T``, ``X^T @ g``). XLA:CPU
    lays the input of a kernel-gradient *convolution* out batch-minor for Eigen and fuses that
    transpose with its producers (benchmarks/README.md, "Round 3"); a dot takes NHWC rows as they are."""
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((0, 0), (0, 0)), dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _pointwise_fwd(x, kernel):
    return pointwise_conv_dot_grads(x, kernel), (x, kernel)


def _pointwise_bwd(res, g):
    x, kernel = res
    c, o = kernel.shape[2:]
    acc = _acc_dtype(x.dtype)
    rows, g2 = x.reshape(-1, c), g.reshape(-1, o)                          # (B*H*W, C), (B*H*W, O)
    dx = jnp.dot(g2, kernel.reshape(c, o).T, preferred_element_type=acc).astype(x.dtype).reshape(x.shape)
    dk = jnp.dot(rows.T, g2, preferred_element_type=acc).astype(kernel.dtype).reshape(kernel.shape)
    return dx, dk


pointwise_conv_dot_grads.defvjp(_pointwise_fwd, _pointwise_bwd)


def materialised(x: Array, after: Array | None = None) -> Array:
    """``x`` as the output of a ``lax.cond`` on a runtime predicate (is the first element of ``after``,
    default ``x``, finite): XLA cannot fuse the ops that produced ``x`` into the consumers of a
    conditional's result, so each consumer reads one materialised array instead of recomputing its
    producers, and with ``after`` the array is not formed before ``after`` exists. The other branch
    (a non-finite first element) returns ``2x - x``: ``x`` again, except where ``2x`` overflows.
    ``lax.optimization_barrier`` does not do this on XLA:CPU (expanded before fusion)."""
    first = (x if after is None else after).reshape(-1)[0]
    return jax.lax.cond(jnp.isfinite(first), lambda v: v, lambda v: v * 2 - v, x)


@jax.custom_vjp
def materialised_for_grad(x: Array) -> Array:
    """``x`` unchanged when evaluated (no cost); under ``jax.grad`` the forward pass returns
    :func:`materialised` ``(x)`` and the backward pass hands the gradient through."""
    return x


materialised_for_grad.defvjp(lambda x: (materialised(x), None), lambda _, g: (g,))


@jax.custom_vjp
def outside_library_fusions(y: Array) -> Array:
    """``y``, the output of a convolution, unchanged. When evaluated (an eval step, prediction) it is
    written ``clamp(-inf, y, inf)``, an identity (NaN and infinities included) that XLA:CPU's YNNPACK
    fusions do not take in, so that a YNNPACK reduction fusion (a global average pool, a max pool)
    cannot grow back over the convolution and run it in YNNPACK instead of Eigen (benchmarks/README.md,
    "Round 10"); under ``jax.grad`` the forward pass returns ``y`` as it is (a training step keeps its
    activations for the backward pass, so nothing grows into them there) and the gradient passes through."""
    return jax.lax.clamp(jnp.array(-jnp.inf, y.dtype), y, jnp.array(jnp.inf, y.dtype))


outside_library_fusions.defvjp(lambda y: (y, None), lambda _, g: (g,))


# Input channels per chunk of a grouped convolution (grouped_conv_chunks): groups narrower than this are
# gathered into chunks of about this width. Measured for ResNeXt-50's grouped 3x3s (benchmarks/README.md
# "Round 11"): 16 was fastest for 4 and 8 channels per group, single groups for 16 and 32.
GROUP_CHUNK_CHANNELS = 16


def block_diagonal(kernel: Array, groups: int) -> Array:
    """``kernel: (kh, kw, C_in / groups, C_out)`` of a grouped convolution -> ``(kh, kw, C_in, C_out)``
    of the ungrouped convolution that computes the same: group g's weights in block (g, g), zeros
    elsewhere."""
    kh, kw, cg, c_out = kernel.shape
    og = c_out // groups
    k = jnp.moveaxis(kernel.reshape(kh, kw, cg, groups, og), 3, 2)            # (kh, kw, G, cg, og)
    eye = jnp.eye(groups, dtype=kernel.dtype)[None, None, :, None, :, None]    # (1, 1, G, 1, G, 1)
    return (k[:, :, :, :, None, :] * eye).reshape(kh, kw, groups * cg, c_out)


def grouped_conv_chunks(x: Array, kernel: Array, groups: int, conv: Callable[[Array, Array], Array]) -> Array:
    """Grouped convolution, ``x: (B, H, W, C)``, ``kernel: (kh, kw, C / groups, O)``, as ungrouped ones:
    ``conv(x_chunk, kernel_chunk)`` on consecutive chunks of ``k`` groups (about
    :data:`GROUP_CHUNK_CHANNELS` input channels; ``k`` divides ``groups``), each with the
    :func:`block_diagonal` kernel of its groups, outputs concatenated along channels. ``k`` groups
    in one chunk cost ``k`` x their multiply-adds (the zero blocks), which XLA:CPU's ungrouped
    convolutions repay at narrow groups. Results equal the grouped convolution's up to float summation
    order (an infinite input also meets the zero weights of the chunk's other groups: NaN there)."""
    cg, c_out = kernel.shape[2], kernel.shape[3]
    og = c_out // groups
    k = max(d for d in range(1, groups + 1) if groups % d == 0 and d * cg <= max(cg, GROUP_CHUNK_CHANNELS))
    outs = []
    for i in range(groups // k):
        w = kernel[..., i * k * og:(i + 1) * k * og]
        outs.append(conv(x[..., i * k * cg:(i + 1) * k * cg], block_diagonal(w, k) if k > 1 else w))
    return jnp.concatenate(outs, axis=-1)


def cpu_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                             dimension_numbers=None, feature_group_count=1, precision=None, **kw):
    """``lax.conv_general_dilated`` as ``nn.Conv`` calls it (NHWC x HWIO), with the rewrites above
    where they apply (whatever the backend: choosing this implementation is the caller's
    decision, ``conv_impl_for``)."""
    plain = (lhs.ndim == 4 and not isinstance(padding, str) and precision is None and not kw
             and all(d == 1 for d in (*(lhs_dilation or (1, 1)), *(rhs_dilation or (1, 1)))))
    if plain:
        kh, kw_, c_in, c_out = rhs.shape
        if feature_group_count > 1 and c_in == 1 and c_out == feature_group_count == lhs.shape[-1]:
            return depthwise_conv_shifted(lhs, rhs, window_strides, padding)
        if feature_group_count > 1 and c_in > 1:
            return grouped_conv_chunks(lhs, rhs, feature_group_count,
                                       lambda x, w: cpu_conv_general_dilated(x, w, window_strides, padding,
                                                                             dimension_numbers=dimension_numbers))
        ho, wo = [(n + p0 + p1 - k) // s + 1 for n, (p0, p1), k, s in zip(lhs.shape[1:3], padding, (kh, kw_), window_strides)]
        if feature_group_count == 1 and ho * wo < kh * kw_:                   # output map smaller than the kernel
            return conv_im2col(lhs, rhs, window_strides, padding)
        if (feature_group_count == 1 and kh == kw_ == 1 and tuple(window_strides) == (1, 1)
                and all(tuple(p) == (0, 0) for p in padding)):
            return outside_library_fusions(pointwise_conv_dot_grads(lhs, rhs))
        if feature_group_count == 1 and kh == kw_ == 1 and tuple(window_strides) != (1, 1):   # ResNet's shortcuts
            lhs = materialised_for_grad(lhs)
    y = jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                                     rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                     feature_group_count=feature_group_count, precision=precision, **kw)
    return outside_library_fusions(y) if plain else y


def matmul_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                                dimension_numbers=None, feature_group_count=1, precision=None, **kw):
    """``cpu_conv_general_dilated`` with EVERY plain ungrouped convolution as im2col + one matmul: what
    a hyper-parameter search group runs on XLA:CPU (``train.search``), where the trials of a group
    are looped over inside one program and XLA:CPU's convolutions run there 5-20x slower than alone
    (NOTES.md); a matmul keeps its speed. Same parameters, results up to float summation order."""
    plain = (lhs.ndim == 4 and not isinstance(padding, str) and precision is None and not kw and feature_group_count == 1
             and all(d == 1 for d in (*(lhs_dilation or (1, 1)), *(rhs_dilation or (1, 1)))))
    if plain:
        return conv_im2col(lhs, rhs, window_strides, padding)
    return cpu_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                                    feature_group_count, precision, **kw)


def max_pool_separable(x: Array, window, strides, padding) -> Array:
    """``flax.linen.max_pool(x, window, strides, padding)`` for ``x: (B, H, W, C)`` as two reduce-windows,
    over the width (``(1, kw)``, stride ``sw``) and then the height (``(kh, 1)``, stride ``sh``): the
    same maxima (max is exact, padding is -inf), 3 + 3 reads per output of a 3x3 window instead of 9.
    XLA:CPU's 3x3 / 2 reduce-window on ResNet's stem map (b16, 112x112x64) ran at ~12 ms, this at
    ~4-7 ms (benchmarks/README.md, "Round 19")."""
    (kh, kw), (sh, sw), ((pt, pb), (pl, pr)) = window, strides, padding
    rows = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, kw, 1), (1, 1, sw, 1),
                                 ((0, 0), (0, 0), (pl, pr), (0, 0)))            # (B, H, Wo, C)
    return jax.lax.reduce_window(rows, -jnp.inf, jax.lax.max, (1, kh, 1, 1), (1, sh, 1, 1),
                                 ((0, 0), (pt, pb), (0, 0), (0, 0)))            # (B, Ho, Wo, C)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool_shifted_grad(x: Array, window, strides, padding) -> Array:
    """``flax.linen.max_pool(x, window, strides, padding)`` (:func:`max_pool_separable`; XLA's gradient
    of a max pool is a select-and-scatter), with the gradient written as kh*kw shifted slices: each
    output's gradient goes to the first input of its window (row-major) equal to the maximum, as
    select-and-scatter sends it, placed back by a strided pad. XLA:CPU rewrites select-and-scatter
    into a reduce-window over index arrays and a scatter, 4-6x slower than these fused loops
    (benchmarks/README.md, "Round 5")."""
    return max_pool_separable(x, window, strides, padding)


def _max_pool_fwd(x, window, strides, padding):
    y = max_pool_separable(x, window, strides, padding)
    return y, (x, y)


def _max_pool_bwd(window, strides, padding, res, g):
    x, y = res                                                  # x: (B, H, W, C), y, g: (B, Ho, Wo, C)
    (kh, kw), (sh, sw), ((pt, pb), (pl, pr)) = window, strides, padding
    hp, wp = x.shape[1] + pt + pb, x.shape[2] + pl + pr
    ho, wo = y.shape[1:3]
    # g and the window's first maximum (row-major tap index) materialised: fused into the placing loop
    # below, XLA:CPU recomputed them for every tap of every input element (g: with the BatchNorm
    # backward of every DenseNet layer that reads the pooled map)
    g = materialised(g)
    first = jnp.full(y.shape, kh * kw, jnp.int8 if kh * kw < 127 else jnp.int32)
    for t, tap in reversed(list(enumerate(shifted_slices(x, kh, kw, strides, padding, -jnp.inf)))):
        first = jnp.where(tap == y, jnp.asarray(t, first.dtype), first)
    first = materialised(first)
    zero = jnp.zeros((), g.dtype)
    dx = None
    for t, (i, j) in enumerate(itertools.product(range(kh), range(kw))):
        part = jax.lax.pad(jnp.where(first == t, g, zero), zero, ((0, 0, 0), (i, hp - i - (ho - 1) * sh - 1, sh - 1),
                                                                (j, wp - j - (wo - 1) * sw - 1, sw - 1), (0, 0, 0)))
        dx = part if dx is None else dx + part                  # (B, Hp, Wp, C)
    return (dx[:, pt:pt + x.shape[1], pl:pl + x.shape[2]],)


max_pool_shifted_grad.defvjp(_max_pool_fwd, _max_pool_bwd)


CONV_IMPLS: dict[str, Callable] = {"lax": jax.lax.conv_general_dilated, "cpu": cpu_conv_general_dilated,
                                   "cpu_matmul": matmul_conv_general_dilated}


# max pooling, ``(x, window, strides, padding) -> y`` (padding ``((pt, pb), (pl, pr))``), of each implementation
MAX_POOLS: dict[str, Callable] = {"lax": nn.max_pool, "cpu": max_pool_shifted_grad, "cpu_matmul": max_pool_shifted_grad}


def conv_impl_for(platform: str) -> str:
    """The implementation for devices of ``platform`` (``jax.Device.platform``: 'cpu', 'gpu', 'tpu')."""
    return "cpu" if platform == "cpu" else "lax"
