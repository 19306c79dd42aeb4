"""Seeing inside the networks: filters, feature maps, receptive fields, saliency, Grad-CAM, occlusion,
class models, nearest neighbours, and the classic fixed filters of the notes.

Every function takes any zoo model with its variables (``model, variables = train.restore(workdir)``
or ``zoo.create(...)`` + ``init``) and images ``x`` already normalised as the model was trained
(``train.data.preprocess_eval``), ``(B, H, W, C)`` or one ``(H, W, C)`` image. They return numpy
arrays; the ``plot_*`` functions write PNGs (matplotlib, Agg backend, imported only when plotting).

    from zoo import inspect as zi
    zi.first_layer_filters(model, variables)                 # (N, kh, kw, C_in) first conv kernels
    zi.feature_maps(model, variables, x, "block3_conv1")     # (B, h, w, C) any tap or module path
    zi.receptive_fields(model)                               # {name: ReceptiveField(size, jump, start)}
    zi.saliency(model, variables, x)                         # (B, H, W) max_c |dS_c / dI|
    zi.grad_cam(model, variables, x)                         # (B, H, W) ReLU(sum_k alpha_k A^k), upsampled
    zi.occlusion(model, variables, x[0], patch=7).map        # (H, W) drop of p_c under a mean-colour patch
    img, scores = zi.class_model(model, variables, 3)        # argmax_I S_c(I) - lambda ||I||^2
    zi.neighbours(model, variables, x[0], images, k=5)       # nearest images in feature and pixel space
    zi.apply_filter(image, "sobel_vertical")                 # classic fixed filters via zoo.layers.conv2d

Modules: ``receptive_fields`` (the jaxpr walk; its per-primitive rules in ``field_rules``),
``attribution`` (predict, saliency, Grad-CAM, occlusion, class model), ``neighbours``, ``filters``
(first-layer filters, feature maps, fixed filters) and ``plots`` (``to_display``, ``plot_*``, loaded on
first use). Module paths are Flax paths (``layer1_0/conv1``), tap names those of ``zoo.feature_names``.
The command ``python -m train.inspect`` writes all of this as pictures for a trained run.
"""
from __future__ import annotations

import importlib

from zoo.inspect.attribution import (Occlusion, class_model, default_cam_layer, grad_cam, occlusion, predict, saliency,
                                     spatial_taps)
from zoo.inspect.filters import FIXED_FILTERS, apply_filter, feature_maps, first_layer_filters
from zoo.inspect.neighbours import embed, nearest_neighbours, neighbours
from zoo.inspect.receptive_fields import ReceptiveField, receptive_field_table, receptive_fields

_PLOTS = ("to_display", "plot_grid", "plot_filters", "plot_feature_maps", "attribution_figure", "plot_attribution",
          "plot_class_model", "plot_neighbours", "plot_fixed_filters")

__all__ = [
    "first_layer_filters", "feature_maps", "ReceptiveField", "receptive_fields", "receptive_field_table",
    "spatial_taps", "default_cam_layer", "predict", "saliency", "grad_cam", "Occlusion", "occlusion",
    "class_model", "embed", "nearest_neighbours", "neighbours", "FIXED_FILTERS", "apply_filter", *_PLOTS,
]


def __getattr__(name: str):
    """The plotting names, from ``zoo.inspect.plots`` on first use."""
    if name in _PLOTS:
        return getattr(importlib.import_module("zoo.inspect.plots"), name)
    raise AttributeError(f"module 'zoo.inspect' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PLOTS))
