"""Convolution arithmetic of the lecture notes: output sizes, parameter counts, and the argument checks
of the numeric helpers (:func:`zoo.layers.conv2d` / :func:`zoo.layers.pool2d`, which compute through
the models' own conv and pooling code) and of the models' pools (:func:`check_pool`, Python ints only:
it runs at trace time). Plain numbers and numpy; re-exported by :mod:`zoo.layers`.

Every check raises one ``ValueError`` line naming the argument and what is allowed, where PyTorch
refuses too (``pad should be at most half of effective kernel size``, ``negative padding is not
supported``, ``Kernel size can't be greater than actual input size``, ``groups must be a positive
integer``...); integers are never taken from floats or bools.
"""
from __future__ import annotations

import numpy as np

from zoo.checks import check_bool, check_groups, check_nonnegative_int, check_positive_int


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def kernel_pair(arg: str, value) -> tuple[int, int]:
    """``value`` as ``(kh, kw)``: an integer >= 1 (square) or a pair of them."""
    if _is_int(value) and value >= 1:
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) and v >= 1 for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"{arg}={value!r}: must be an integer >= 1 or a pair (kh, kw) of them")


def conv_output_size(n: int, f: int, p: int = 0, s: int = 1, d: int = 1) -> int:
    """Output size of a convolution or pooling: ``floor((n + 2p - d(f-1) - 1) / s) + 1``
    (``floor((n + 2p - f) / s) + 1`` without dilation). 227, f=11, s=4 -> 55."""
    for arg, v in (("n", n), ("f", f), ("s", s), ("d", d)):
        check_positive_int(arg, v)
    check_nonnegative_int("p", p)
    span = n + 2 * p - d * (f - 1)
    if span < 1:
        raise ValueError(f"window f={f} (dilation {d}) does not fit input n={n} with padding p={p}")
    return int((span - 1) // s + 1)


def conv_params(in_channels: int, out_channels: int, kernel_size, groups: int = 1, bias: bool = True) -> int:
    """Parameters of a conv layer: ``out * (k_h * k_w * in / groups) + out`` with bias.
    10 filters of 3x3x3 -> 280; 96 of 11x11x3 -> 34,944."""
    check_positive_int("in_channels", in_channels)
    check_positive_int("out_channels", out_channels)
    kh, kw = kernel_pair("kernel_size", kernel_size)
    check_positive_int("groups", groups)
    check_groups(groups, in_channels, out_channels)
    check_bool("bias", bias)
    return int(out_channels * kh * kw * (in_channels // groups) + (out_channels if bias else 0))


def check_image(image) -> np.ndarray:
    """``image`` as a float32 ``(H, W)`` array: one channel, at least 1x1."""
    a = np.asarray(image, np.float32)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"image: must be a 2-D array (H, W) of one channel, got shape {a.shape}")
    return a


def check_conv2d(image, kernel, stride, padding) -> tuple[np.ndarray, np.ndarray]:
    """Arguments of :func:`zoo.layers.conv2d`, checked; returns the image and kernel as float32 arrays."""
    img = check_image(image)
    k = np.asarray(kernel, np.float32)
    if k.ndim != 2 or k.size == 0:
        raise ValueError(f"kernel: must be a 2-D array (kh, kw), got shape {k.shape}")
    check_positive_int("stride", stride)
    check_nonnegative_int("padding", padding)
    for n, f in zip(img.shape, k.shape):
        if n + 2 * padding < f:
            raise ValueError(f"kernel {k.shape[0]}x{k.shape[1]} does not fit the {img.shape[0]}x{img.shape[1]} "
                             f"image with padding={padding}")
    return img, k


def check_pool(window, stride, padding, size=None, ceil_mode: bool = False) -> None:
    """Arguments of a pool (``nn.MaxPool2d`` / ``nn.AvgPool2d``): integer window and stride >= 1,
    ``0 <= padding <= window // 2`` (PyTorch's "at most half of effective kernel size"), and, given the
    spatial ``size`` ``(H, W)``, at least one output position (PyTorch's "Output size is too small"; with
    ``ceil_mode`` a window may overhang the input as long as it starts inside it)."""
    check_positive_int("window", window)
    check_positive_int("stride", stride)
    check_nonnegative_int("padding", padding)
    if padding > window // 2:
        raise ValueError(f"padding={padding}: at most window // 2 = {window // 2} "
                         "(half the window, as PyTorch's pools)")
    for n in size or ():
        if not _is_int(n):  # a symbolic size: nothing to check
            continue
        span = n + 2 * padding - window
        out = (-(-span // stride) if ceil_mode else span // stride) + 1
        if ceil_mode and (out - 1) * stride >= n + padding:  # the last window must start inside
            out -= 1
        if out < 1:
            raise ValueError(f"window={window} does not fit the {size[0]}x{size[1]} input with padding={padding}")
