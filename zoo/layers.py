"""Shared building blocks used by every family: conv, norm factory, conv-norm-act, dense,
channel shuffle, pooling, named feature taps, input checks; plus the lecture notes' numeric
cross-correlation and pooling (:func:`conv2d`, :func:`pool2d`) through the models' own code, and their
convolution arithmetic (``conv_output_size``, ``conv_params``), re-exported from :mod:`zoo.arithmetic`.

Conventions (every family follows them, checkpoints and weight conversion depend on them):

* Activations are NHWC ``x: (B, H, W, C)``; conv kernels are HWIO ``(kh, kw, C_in / groups, C_out)``;
  dense kernels are ``(in, out)``.
* Padding is explicit and symmetric, as PyTorch computes it (``k // 2 * dilation`` on each side by
  default). Flax's ``'SAME'`` pads stride-2 convs asymmetrically and would break parity.
* Module names follow torchvision's attribute names with ``.`` replaced by ``_``
  (``layer1_0/conv1``, ``features_3``, ``classifier_1``) so that a converter is a rename + transpose.
* Every model is a :class:`ZooModel`. Inside ``__call__`` it builds ``ops = self.ops(train)`` and
  calls ``ops.conv(x, ...)``, ``ops.norm(x, ...)``, ``ops.conv_norm_act(x, ...)``, ``ops.dense(x, ...)``;
  sub-blocks (``nn.Module``) receive ``ops`` as a field. The :class:`Ops` value carries dtype,
  param_dtype, the norm kind and BatchNorm settings, so that one option on the model reaches every layer.
* Named feature maps (stage outputs, ``pre_logits``...) are marked with :func:`tap` in the top-level
  module: sown into the ``'features'`` collection, and, when the caller passes a ``'taps'``
  collection, perturbed additively so that ``d score / d feature`` is a plain gradient (Grad-CAM).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.arithmetic import check_conv2d, check_image, check_pool
from zoo.arithmetic import conv_output_size, conv_params  # noqa: F401  (re-exported: zoo.layers.conv_output_size)
from zoo.batchnorm import BatchNorm
from zoo.checks import check_choice, check_float_dtype, check_groups, check_positive, check_positive_int, is_number
from zoo.convs import CONV_IMPLS, MAX_POOLS
from zoo.dropout import dropout

Array = jax.Array
Dtype = Any

NORMS = ("batch", "group", "layer", "instance")

# torchvision initialisers, written with jax.nn.initializers.
# kaiming_normal_(mode='fan_out', nonlinearity='relu'): ResNet, VGG, MobileNet, ShuffleNet convs.
kaiming_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# kaiming_normal_() (fan_in, relu gain): DenseNet convs.
kaiming_normal_fan_in = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
# nn.Linear / nn.Conv2d default: kaiming_uniform_(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_default_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias(fan_in: int) -> Callable:
    """PyTorch's default bias init for Linear/Conv: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


def torch_padding(kernel_size, dilation=1, padding=None) -> tuple[tuple[int, int], tuple[int, int]]:
    """Explicit symmetric padding as PyTorch applies it; default ``(k - 1) // 2 * dilation``."""
    kh, kw = _pair(kernel_size)
    dh, dw = _pair(dilation)
    if padding is None:
        ph, pw = (kh - 1) // 2 * dh, (kw - 1) // 2 * dw
    else:
        ph, pw = _pair(padding)
    return ((ph, ph), (pw, pw))


def group_count(norm_groups: int, channels: int) -> int:
    """Groups for GroupNorm: ``norm_groups`` when it divides ``channels``, else their gcd."""
    return math.gcd(norm_groups, channels)


@dataclasses.dataclass(frozen=True)
class Ops:
    """Layer factory shared by every family (hashable, so it can be a field of a sub-module).

    ``train`` selects batch statistics vs running averages for BatchNorm and enables dropout.
    Each method must be called inside a ``@nn.compact`` method: the layers it creates belong to
    the calling module and take the ``name`` given (stable parameter paths).
    """

    train: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    norm_kind: str | None = "batch"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    axis_name: str | None = None
    norm_groups: int = 32
    conv_init: Callable = kaiming_normal_fan_out
    conv_general_dilated: Callable = jax.lax.conv_general_dilated  # zoo.convs.CONV_IMPLS[model.conv_impl]
    max_pool_impl: Callable = nn.max_pool                           # zoo.convs.MAX_POOLS[model.conv_impl]

    def conv(self, x: Array, features: int, kernel_size, *, strides=1, padding=None, groups: int = 1,
             dilation=1, use_bias: bool = False, kernel_init: Callable | None = None,
             bias_init: Callable | None = None, name: str | None = None) -> Array:
        """2-D convolution, HWIO kernel, PyTorch padding. ``groups`` = feature_group_count."""
        in_ch = x.shape[-1]
        check_groups(groups, in_ch, features, f" of conv {name!r}")
        kh, kw = _pair(kernel_size)
        fan_in = in_ch // groups * kh * kw
        return nn.Conv(
            features, (kh, kw), strides=_pair(strides), padding=torch_padding((kh, kw), dilation, padding),
            kernel_dilation=_pair(dilation), feature_group_count=groups, use_bias=use_bias,
            dtype=self.dtype, param_dtype=self.param_dtype,
            kernel_init=kernel_init or self.conv_init,
            bias_init=bias_init or (torch_default_bias(fan_in) if kernel_init is torch_default_kernel
                                    else nn.initializers.zeros),
            conv_general_dilated=self.conv_general_dilated, name=name)(x)

    def max_pool(self, x: Array, window: int, stride: int, padding: int = 0, ceil_mode: bool = False) -> Array:
        """:func:`max_pool` with the model's implementation."""
        return max_pool(x, window, stride, padding, ceil_mode, impl=self.max_pool_impl)

    def norm(self, x: Array, *, name: str | None = None, kind: str | None | object = dataclasses.MISSING,
             scale_init: Callable = nn.initializers.ones) -> Array:
        """The norm factory: BatchNorm (default; :mod:`zoo.batchnorm`), GroupNorm, layer norm (GroupNorm
        with one group, per-channel affine) or instance norm, all over NHWC with per-channel scale and bias.
        ``kind`` overrides the model-wide choice for one layer (None: identity)."""
        kind = self.norm_kind if kind is dataclasses.MISSING else kind
        check_choice("norm", kind, (*NORMS, None))
        c = x.shape[-1]
        common = dict(dtype=self.dtype, param_dtype=self.param_dtype, scale_init=scale_init, name=name)
        if kind is None:
            return x
        if kind == "batch":
            return BatchNorm(use_running_average=not self.train, momentum=self.bn_momentum,
                             epsilon=self.bn_epsilon, axis_name=self.axis_name, **common)(x)
        if kind == "group":
            return nn.GroupNorm(num_groups=group_count(self.norm_groups, c), epsilon=self.bn_epsilon, **common)(x)
        if kind == "layer":
            return nn.GroupNorm(num_groups=1, epsilon=self.bn_epsilon, **common)(x)
        return nn.GroupNorm(num_groups=c, epsilon=self.bn_epsilon, **common)(x)  # instance

    def conv_norm_act(self, x: Array, features: int, kernel_size, *, strides=1, padding=None,
                      groups: int = 1, dilation=1, act: Callable | None = nn.relu,
                      conv_name: str | None = None, norm_name: str | None = None,
                      norm_scale_init: Callable = nn.initializers.ones, kernel_init: Callable | None = None) -> Array:
        """conv -> norm -> activation, torchvision's ``Conv2dNormActivation``. Without a norm
        (``norm_kind=None``) the conv carries a bias instead."""
        x = self.conv(x, features, kernel_size, strides=strides, padding=padding, groups=groups,
                      dilation=dilation, use_bias=self.norm_kind is None, kernel_init=kernel_init, name=conv_name)
        x = self.norm(x, name=norm_name, scale_init=norm_scale_init)
        return act(x) if act is not None else x

    def dense(self, x: Array, features: int, *, name: str | None = None, kernel_init: Callable | None = None,
              bias_init: Callable | None = None, use_bias: bool = True) -> Array:
        """Fully connected layer, ``(in, out)`` kernel; default init is PyTorch's ``nn.Linear``."""
        return nn.Dense(features, use_bias=use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
                        kernel_init=kernel_init or torch_default_kernel,
                        bias_init=bias_init or torch_default_bias(x.shape[-1]), name=name)(x)

    def dropout(self, x: Array, rate: float) -> Array:
        """Dropout in train mode only (needs ``rngs={'dropout': key}`` then); ``rate`` may be an array."""
        return dropout(x, rate, deterministic=not self.train)


# ----------------------------------------------------------------------------- functional ops

def max_pool(x: Array, window: int, stride: int, padding: int = 0, ceil_mode: bool = False,
             impl: Callable = nn.max_pool) -> Array:
    """``nn.MaxPool2d(window, stride, padding, ceil_mode)`` in NHWC (padding with -inf); ``impl``: one of
    ``zoo.convs.MAX_POOLS`` (models pass their own through :meth:`Ops.max_pool`)."""
    check_pool(window, stride, padding, x.shape[1:3], ceil_mode)
    pads = ((padding, padding), (padding, padding))
    if ceil_mode:
        pads = tuple((p0, p1 + _ceil_extra(n, window, stride, padding)) for (p0, p1), n in zip(pads, x.shape[1:3]))
    return impl(x, (window, window), (stride, stride), pads)


def avg_pool(x: Array, window: int, stride: int, padding: int = 0, count_include_pad: bool = True) -> Array:
    """``nn.AvgPool2d(window, stride, padding)`` in NHWC."""
    check_pool(window, stride, padding, x.shape[1:3])
    pads = [(padding, padding), (padding, padding)]
    return nn.avg_pool(x, (window, window), (stride, stride), padding=pads, count_include_pad=count_include_pad)


def _ceil_extra(n: int, k: int, s: int, p: int) -> int:
    """Extra right padding that turns floor into ceil output size (PyTorch's rule: the last window
    must start inside the input or left padding)."""
    out_floor = (n + 2 * p - k) // s + 1
    out_ceil = -(-(n + 2 * p - k) // s) + 1
    if (out_ceil - 1) * s >= n + p:
        out_ceil -= 1
    return (out_ceil - out_floor) * s


def adaptive_bins(n: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive-pool bins over ``n`` positions: ``[floor(i n / out), ceil((i + 1) n / out))``."""
    return [((i * n) // out, -(-((i + 1) * n) // out)) for i in range(out)]


def adaptive_avg_pool(x: Array, output_size: int | tuple[int, int]) -> Array:
    """``nn.AdaptiveAvgPool2d`` in NHWC, with PyTorch's bin edges (:func:`adaptive_bins`)."""
    oh, ow = _pair(output_size)
    h, w = x.shape[1:3]
    if (h, w) == (oh, ow):
        return x
    if h % oh == 0 and w % ow == 0:  # uniform bins: one reshape-mean
        return x.reshape(x.shape[0], oh, h // oh, ow, w // ow, x.shape[-1]).mean(axis=(2, 4))
    x = jnp.concatenate([x[:, a:b].mean(axis=1, keepdims=True) for a, b in adaptive_bins(h, oh)], axis=1)
    return jnp.concatenate([x[:, :, a:b].mean(axis=2, keepdims=True) for a, b in adaptive_bins(w, ow)], axis=2)


def global_avg_pool(x: Array) -> Array:
    """``(B, H, W, C) -> (B, C)``."""
    return x.mean(axis=(1, 2))


def flatten_nchw(x: Array) -> Array:
    """``torch.flatten(x, 1)`` of the NCHW tensor: ``(B, H, W, C) -> (B, C * H * W)``, channel-major.
    A torchvision ``Linear`` that follows a flatten (AlexNet, VGG, LeNet) then converts by
    transposition alone; for ``H = W = 1`` it is a plain reshape."""
    return x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)


def local_response_norm(x: Array, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> Array:
    """``torch.nn.LocalResponseNorm(size, alpha, beta, k)`` across channels, NHWC:

        b_c = a_c / (k + alpha / size * sum_{c' = c - size//2}^{c + (size-1)//2} a_{c'}^2) ** beta

    with zero padding beyond the first and last channel. PyTorch (and Caffe) divide ``alpha`` by
    ``size``; Krizhevsky et al. (2012, sec. 3.3) do not: their ``k=2, n=5, alpha=1e-4, beta=0.75``
    is ``local_response_norm(x, 5, alpha=5 * 1e-4, beta=0.75, k=2.0)`` here. Computed in at least
    float32, returned in ``x.dtype``."""
    check_positive_int("size", size)
    dtype = x.dtype
    xf = x.astype(jnp.promote_types(dtype, jnp.float32))
    window_sum = jax.lax.reduce_window(xf * xf, 0.0, jax.lax.add, (1, 1, 1, size), (1, 1, 1, 1),
                                       ((0, 0), (0, 0), (0, 0), (size // 2, (size - 1) // 2)))
    return (xf / (k + alpha / size * window_sum) ** beta).astype(dtype)


def hard_sigmoid(x: Array) -> Array:
    """PyTorch ``nn.Hardsigmoid``: relu6(x + 3) / 6."""
    return nn.relu6(x + 3.0) / 6.0


def hard_swish(x: Array) -> Array:
    """PyTorch ``nn.Hardswish``: x * relu6(x + 3) / 6."""
    return x * hard_sigmoid(x)


def tap(module: nn.Module, name: str, x: Array) -> Array:
    """Mark ``x`` as the named feature map ``name`` of ``module`` (call it on the top-level model).

    Sown into the ``'features'`` collection (read with ``mutable=['features']``; never by ``init``,
    whose variables hold only ``params`` and ``batch_stats``). When the caller
    supplies a ``'taps'`` collection holding an array under ``name``, it is added to ``x``: the
    gradient with respect to that zero array is the gradient with respect to the feature map.
    """
    if module.has_variable("taps", name):
        x = x + module.get_variable("taps", name)
    if module.is_mutable_collection("features") and not module.is_initializing():
        module.sow("features", name, x, reduce_fn=lambda _, v: v, init_fn=lambda: None)
    return x


# ----------------------------------------------------------------------------- the model base

@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a model accepts: channels, the smallest spatial size, optionally an exact size, and the
    size its options make it native to (``native_size``: ResNet's ``small_input`` stem, 32x32 CIFAR
    images), which training takes before the registry's default input."""

    channels: int
    min_size: int
    exact_size: int | None = None
    native_size: int | None = None

    def example_shape(self, size: int = 224) -> tuple[int, int, int]:
        """``(H, W, C)`` of an example input: the exact size if there is one, else the native size,
        else ``max(min_size, size)``."""
        side = self.exact_size or self.native_size or max(self.min_size, size)
        return (side, side, self.channels)


class ZooModel(nn.Module):
    """Fields shared by every zoo model (timm-style consistent options).

    num_classes: logits per image. dtype / param_dtype: compute and parameter dtypes.
    norm: 'batch' | 'group' | 'layer' | 'instance' | None (the reference's is the default).
    bn_momentum / bn_epsilon: Flax convention (Flax momentum = 1 - PyTorch momentum).
    axis_name: mapped axis over which BatchNorm averages batch statistics (cross-device BN).
    in_channels: channels of the input image.
    conv_impl: how convolutions are computed, a key of ``zoo.convs.CONV_IMPLS`` ('lax': XLA's
      convolution, any backend; 'cpu': XLA:CPU's slow cases rewritten). An execution choice made by
      whoever knows the devices (``zoo.convs.conv_impl_for``); parameters are the same either way.
    """

    num_classes: int = 1000
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    norm: str | None = "batch"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    axis_name: str | None = None
    in_channels: int = 3
    conv_impl: str = "lax"

    def __init_subclass__(cls, **kwargs):  # forward: the body of the compact __call__ (no wrapper, no name scope)
        if "forward" in cls.__dict__:
            nn.nowrap(cls.__dict__["forward"])
        super().__init_subclass__(**kwargs)

    # Per-family checks of its own options; raise ValueError naming the argument.
    def check_options(self) -> None:
        pass

    def __post_init__(self):
        check_positive_int("num_classes", self.num_classes)
        check_positive_int("in_channels", self.in_channels)
        check_choice("norm", self.norm, (*NORMS, None))
        check_float_dtype("dtype", self.dtype)
        check_float_dtype("param_dtype", self.param_dtype)
        if not isinstance(self.bn_momentum, jax.Array) and (not is_number(self.bn_momentum)
                                                            or not 0.0 <= self.bn_momentum < 1.0):
            raise ValueError(f"bn_momentum={self.bn_momentum!r}: allowed range is [0, 1) "
                             "(Flax convention: 1 - PyTorch momentum)")
        check_positive("bn_epsilon", self.bn_epsilon)
        if self.axis_name is not None and not isinstance(self.axis_name, (str, tuple)):
            raise ValueError(f"axis_name={self.axis_name!r}: the name of a mapped axis (a str) or None")
        check_choice("conv_impl", self.conv_impl, CONV_IMPLS)
        self._check_norm_options()
        self.check_options()
        super().__post_init__()

    def _check_norm_options(self) -> None:
        """``bn_momentum`` moves BatchNorm's running statistics and ``bn_epsilon`` is every norm's: given
        (not the family's default) to a model without the layer they act on, they would change nothing."""
        default = {f.name: f.default for f in dataclasses.fields(self)}
        for name, acts_on in (("bn_momentum", ("batch",)), ("bn_epsilon", NORMS)):
            value = getattr(self, name)
            if self.norm not in acts_on and not isinstance(value, jax.Array) and value != default[name]:
                layers = "no normalisation layers" if self.norm is None else f"{self.norm} norm layers"
                raise ValueError(f"{name}={value!r}: {type(self).__name__} has {layers} (norm={self.norm!r}), "
                                 f"which {name} does not act on")

    def input_spec(self) -> InputSpec:
        raise NotImplementedError

    def example_input_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` to trace or initialise the model with when no size is given (analyses, conversion)."""
        return self.input_spec().example_shape()

    def ops(self, train: bool, **overrides) -> Ops:
        kw = dict(train=train, dtype=self.dtype, param_dtype=self.param_dtype, norm_kind=self.norm,
                  bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon, axis_name=self.axis_name,
                  conv_general_dilated=CONV_IMPLS[self.conv_impl], max_pool_impl=MAX_POOLS[self.conv_impl])
        kw.update(overrides)
        return Ops(**kw)

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Logits ``(B, num_classes)`` of ``x: (B, H, W, C)``, checked against :meth:`input_spec` and cast to
        ``dtype``; :meth:`forward` runs with the layer factory of this mode (``train``: batch statistics, dropout)."""
        if not isinstance(train, (bool, np.bool_)):
            hint = (" (under jax.jit mark it static: jax.jit(model.apply, static_argnames='train'))"
                    if isinstance(train, jax.core.Tracer) else "")
            raise ValueError(f"train={train!r}: must be True or False{hint}")
        return self.forward(self.check_input(x), self.ops(bool(train)))

    def forward(self, x: Array, ops: Ops) -> Array:
        """The family's network, ``x: (B, H, W, C)`` -> logits (layers from ``ops``, taps via :func:`tap`)."""
        raise NotImplementedError

    def check_input(self, x: Array) -> Array:
        """Raise ValueError with the expected shape when ``x`` does not fit; cast to ``dtype``. Integer
        images are refused: the models take float images normalised as in training, as torchvision's do."""
        if not hasattr(x, "ndim"):
            x = jnp.asarray(x)
        spec, problem = self.input_spec(), None
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"{type(self).__name__}: input of dtype {x.dtype}; the models take float images "
                             f"normalised as in training (e.g. train.data.preprocess_eval, or "
                             f"zoo.weights transforms for published weights)")
        if x.ndim != 4:
            problem = "input must be NHWC of rank 4"
        elif x.shape[0] < 1:
            problem = "empty batch"
        elif x.shape[-1] != spec.channels:
            problem = f"input has {x.shape[-1]} channels"
        elif spec.exact_size and x.shape[1:3] != (spec.exact_size, spec.exact_size):
            problem = "input size {}x{}".format(*x.shape[1:3])
        elif min(x.shape[1:3]) < spec.min_size:
            problem = "input {}x{} is too small".format(*x.shape[1:3])
        if problem:
            size = spec.exact_size or f">={spec.min_size}"
            raise ValueError(f"{type(self).__name__}: {problem}, expected (B, H, W, {spec.channels}) with H, W "
                             f"{size}; got shape {tuple(x.shape)}")
        return jnp.asarray(x, self.dtype)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """torchvision's ``_make_divisible`` (MobileNet channel rounding)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


# ----------------------------------------------------------------------------- the notes' numeric examples

def conv2d(image, kernel, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Single-channel cross-correlation of a 2-D ``image`` with a 2-D ``kernel`` as a CNN layer computes it,
    through the same ``Ops.conv``/``lax.conv`` path (HWIO kernel, explicit symmetric padding). For teaching
    and tests; arguments checked by :func:`zoo.arithmetic.check_conv2d`."""
    img, k = check_conv2d(image, kernel, stride, padding)
    out = jax.lax.conv_general_dilated(jnp.asarray(img)[None, :, :, None], jnp.asarray(k)[:, :, None, None],
                                       (stride, stride), torch_padding(k.shape, 1, padding),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                       precision=jax.lax.Precision.HIGHEST)
    return np.asarray(out[0, :, :, 0])


def pool2d(image, window: int, stride: int, kind: str = "max", padding: int = 0) -> np.ndarray:
    """Single-channel max or average pooling of a 2-D ``image`` through the models' own pooling functions."""
    check_choice("kind", kind, ("max", "avg"))
    x = jnp.asarray(check_image(image))[None, :, :, None]
    out = max_pool(x, window, stride, padding) if kind == "max" else avg_pool(x, window, stride, padding)
    return np.asarray(out[0, :, :, 0])
