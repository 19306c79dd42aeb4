"""What the first layer learned and what a layer computes: first-layer filters, feature maps, and
the classic fixed filters of the notes (Sobel, Prewitt, Scharr, average) through the models' conv code."""
from __future__ import annotations

from typing import Any

import numpy as np

from zoo.checks import check_nonnegative_int, check_positive_int
from zoo.features import features
from zoo.inspect.inputs import as_batch, leaf_at
from zoo.layers import conv2d
from zoo.summary import abstract_variables, layer_table


def first_layer_filters(model, variables, input_shape=None) -> np.ndarray:
    """The kernels of the first convolution the forward pass calls, ``(N, kh, kw, C_in / groups)``
    (HWIO -> one filter per row), e.g. AlexNet's 96 (``alexnet_v1``) or 64 (``alexnet``) 11x11x3 filters."""
    shape = tuple(input_shape) if input_shape is not None else model.example_input_shape()
    rows = [r for r in layer_table(model, shape) if r.kind == "Conv"]
    if not rows:
        raise ValueError(f"{type(model).__name__} has no convolution layer")
    path = f"params/{rows[0].path}/kernel"
    expected, kernel = leaf_at(abstract_variables(model, shape), path), leaf_at(variables, path)
    if kernel is None or np.shape(kernel) != expected.shape:
        raise ValueError(f"variables: {type(model).__name__} keeps its first convolution's {expected.shape} kernel at "
                         f"{path}; these variables have {np.shape(kernel) if kernel is not None else 'none'} there "
                         f"(another model's variables?)")
    return np.moveaxis(np.asarray(kernel, np.float32), -1, 0)


def feature_maps(model, variables, x, layer: str) -> np.ndarray:
    """Feature maps ``(B, h, w, C)`` of the tap or module path ``layer`` for images ``x``
    (through :func:`zoo.features`). ValueError when the layer's output is not a spatial map."""
    if not isinstance(layer, str):
        raise ValueError(f"layer={layer!r}: one tap name or module path (a str); zoo.features takes several")
    out = np.asarray(features(model, variables, as_batch(x), [layer])[layer])
    if out.ndim != 4:
        raise ValueError(f"layer {layer!r} is not a spatial feature map: its output has shape {out.shape}")
    return out


# ----------------------------------------------------------------------------- classic fixed filters

FIXED_FILTERS: dict[str, np.ndarray] = {
    # as the notes write them (cross-correlation kernels); *_vertical respond to vertical edges
    "vertical_edge": np.array([[1, 0, -1]] * 3, np.float32),
    "horizontal_edge": np.array([[1, 0, -1]] * 3, np.float32).T.copy(),
    "sobel_vertical": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32),
    "sobel_horizontal": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32).T.copy(),
    "prewitt_vertical": np.array([[-1, 0, 1]] * 3, np.float32),
    "prewitt_horizontal": np.array([[-1, 0, 1]] * 3, np.float32).T.copy(),
    "scharr_vertical": np.array([[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]], np.float32),
    "scharr_horizontal": np.array([[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]], np.float32).T.copy(),
    "average": np.full((3, 3), 1.0 / 9.0, np.float32),
}


def apply_filter(image, kernel: str | Any, *, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Cross-correlate a 2-D ``image`` (or each channel of ``(H, W, C)``) with a fixed filter (a name of
    :data:`FIXED_FILTERS` or a 2-D array) through :func:`zoo.layers.conv2d`, the conv code of the models.
    Rows ``100 100 200 200`` with ``'sobel_vertical'`` give 400 everywhere."""
    if isinstance(kernel, str):
        if kernel not in FIXED_FILTERS:
            raise ValueError(f"kernel={kernel!r}: allowed names are {tuple(FIXED_FILTERS)} (or pass an array)")
        kernel = FIXED_FILTERS[kernel]
    kernel = np.asarray(kernel, np.float32)
    if kernel.ndim != 2 or min(kernel.shape) < 1:
        raise ValueError(f"kernel: a 2-D array (kh, kw) or a name of FIXED_FILTERS, got shape {kernel.shape}")
    check_positive_int("stride", stride)
    check_nonnegative_int("padding", padding)
    image = np.asarray(image, np.float32)
    if image.ndim in (2, 3) and min(image.shape[:2]) + 2 * padding < max(kernel.shape):
        raise ValueError(f"image: {image.shape[0]}x{image.shape[1]} (padded by {padding}) is smaller than the "
                         f"{kernel.shape[0]}x{kernel.shape[1]} kernel")
    if image.ndim == 2:
        return conv2d(image, kernel, stride, padding)
    if image.ndim == 3:
        return np.stack([conv2d(image[..., i], kernel, stride, padding) for i in range(image.shape[-1])], -1)
    raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
