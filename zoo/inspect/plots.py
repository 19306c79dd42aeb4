"""Pictures of the analyses as PNGs: grids of tiles (filters, feature maps, neighbours), attribution
maps over their image, class models, fixed-filter responses. matplotlib (Agg backend) is imported
only when a figure is drawn."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from zoo.files import save_figure
from zoo.inspect.filters import FIXED_FILTERS, apply_filter


def _plt():
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    return plt


def _minmax(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float32)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def to_display(x, preprocessing: dict | None = None) -> np.ndarray:
    """A normalised model input ``(H, W, C)`` as a displayable float image in [0, 1] ((H, W) for one
    channel): undone with the ``preprocessing`` dict's mean/std (one value per channel of ``x``, or one
    for all, as stored with the checkpoint) when given, else min-max scaled."""
    x = np.asarray(x, np.float32)
    if x.ndim == 4:
        x = x[0]
    if preprocessing is not None:
        if not hasattr(preprocessing, "get") or preprocessing.get("mean") is None or preprocessing.get("std") is None:
            got = (f"keys {sorted(map(str, preprocessing))}" if hasattr(preprocessing, "keys")
                   else f"a {type(preprocessing).__name__}")
            raise ValueError(f"preprocessing: a dict with the 'mean' and 'std' the images were normalised with (the "
                             f"checkpoint's meta['preprocessing']), got {got}")
        std, mean = (np.asarray(preprocessing[k], np.float32).reshape(-1) for k in ("std", "mean"))
        if x.ndim != 3 or not {std.size, mean.size} <= {1, x.shape[-1]}:
            raise ValueError(f"preprocessing: mean and std of {mean.size} and {std.size} channels for an image of "
                             f"shape {x.shape}; they must have one value per channel of the image (H, W, C), or one "
                             f"for all")
        x = np.clip(x * std + mean, 0, 1)
    else:
        x = _minmax(x)
    return x[..., 0] if x.shape[-1] == 1 else x


def _save_figure(fig, path, title: str | None = None) -> Path:
    """Title, tight layout, write the PNG (creating its folder), close; returns the path."""
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = save_figure(fig, path, dpi=100)
    _plt().close(fig)
    return path


def plot_grid(tiles, path, *, titles: Sequence[str] | None = None, ncols: int | None = None, cmap: str = "gray",
              normalize: str | None = "each", title: str | None = None, tile_inches: float = 1.3) -> Path:
    """One figure of image tiles ``(N, h, w)`` or ``(N, h, w, 3)`` (or a list of such arrays) written to
    ``path`` (PNG). ``normalize``: 'each' (min-max per tile), 'all' (one scale), None (values in [0, 1]).
    Shared by filters, feature maps and neighbours."""
    plt = _plt()
    tiles = [np.asarray(t, np.float32) for t in tiles]
    if normalize == "all":
        lo = min(float(t.min()) for t in tiles)
        hi = max(float(t.max()) for t in tiles)
        tiles = [(t - lo) / (hi - lo) if hi > lo else np.zeros_like(t) for t in tiles]
    elif normalize == "each":
        tiles = [_minmax(t) for t in tiles]
    elif normalize is not None:
        raise ValueError(f"normalize={normalize!r}: allowed values are ('each', 'all', None)")
    n = len(tiles)
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    nrows = max(1, math.ceil(n / ncols))
    row_inches = tile_inches + (0.25 if titles is not None else 0.0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * tile_inches, nrows * row_inches + (0.4 if title else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            t = tiles[i]
            ax.imshow(np.clip(t, 0, 1), cmap=cmap if t.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            if titles is not None and i < len(titles) and titles[i]:
                ax.set_title(titles[i], fontsize=7)
    return _save_figure(fig, path, title)


def plot_filters(filters: np.ndarray, path, *, title: str | None = None, max_filters: int = 256) -> Path:
    """Grid of first-layer filters ``(N, kh, kw, C)`` (:func:`first_layer_filters`): RGB tiles for 3
    input channels, grey otherwise (channel mean), each min-max scaled (as AlexNet's 96 are shown); the
    first ``max_filters``, which the title (given or default) then says."""
    f = np.asarray(filters, np.float32)[:max_filters]
    tiles = f if f.shape[-1] == 3 else f.mean(-1)
    return plot_grid(list(tiles), path, title=(title or f"{len(filters)} first-layer filters "
                     f"{f.shape[1]}x{f.shape[2]}x{f.shape[3]}") + _first(len(f), len(filters)), normalize="each")


def _first(shown: int, total: int) -> str:
    """The title's note when a grid shows only the first ``shown`` of ``total`` tiles."""
    return f" (first {shown})" if shown < total else ""


def plot_feature_maps(maps: np.ndarray, path, *, title: str | None = None, max_maps: int = 64) -> Path:
    """Grid of the channels of one image's feature maps ``(h, w, C)`` (or ``(1, h, w, C)``), each
    min-max scaled, the first ``max_maps`` channels; with fewer shown than there are, the title (given
    or default) ends in ``(first max_maps)``."""
    m = np.asarray(maps, np.float32)
    if m.ndim == 4:
        m = m[0]
    c = min(m.shape[-1], max_maps)
    return plot_grid([m[..., i] for i in range(c)], path, titles=[str(i) for i in range(c)], cmap="viridis",
                     title=(title or f"{m.shape[-1]} maps {m.shape[0]}x{m.shape[1]}") + _first(c, m.shape[-1]))


def attribution_figure(image: np.ndarray, heatmap: np.ndarray, *, cmap: str = "jet", symmetric: bool = False):
    """Three panels: the input (display image from :func:`to_display`), the map (saliency, Grad-CAM,
    occlusion; ``symmetric``: a diverging scale centred on 0, 'RdBu_r'), and the map over the whole
    input, drawn with the same colour map and scale as the map panel (one colour map per quantity).
    A map coarser than the image (Grad-CAM's ``upsample=False``) is stretched over all of it."""
    plt = _plt()
    img = np.asarray(image, np.float32)
    hm = np.asarray(heatmap, np.float32)
    if img.ndim not in (2, 3):
        raise ValueError(f"image: a display image (H, W) or (H, W, 3) (zi.to_display), got shape {img.shape}")
    if hm.ndim != 2 or hm.size == 0:
        raise ValueError(f"heatmap: one map (h, w) (e.g. zi.saliency(...)[0]), got shape {hm.shape}")
    h, w = img.shape[:2]
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)   # the image's pixels, as imshow places them
    if symmetric:
        lim = float(np.abs(hm).max()) or 1.0
        cmap, lo, hi = "RdBu_r", -lim, lim
    else:
        lo, hi = float(hm.min()), float(hm.max())
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    for ax in axes:
        ax.axis("off")
    gray = "gray" if img.ndim == 2 else None
    axes[0].imshow(img, cmap=gray, vmin=0, vmax=1)
    axes[0].set_title("input", fontsize=8)
    im = axes[1].imshow(hm, cmap=cmap, vmin=lo, vmax=hi)
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    axes[1].set_title("map", fontsize=8)
    axes[2].imshow(img, cmap=gray, vmin=0, vmax=1)
    axes[2].imshow(hm, cmap=cmap, vmin=lo, vmax=hi, alpha=0.5, extent=extent)
    axes[2].set_xlim(extent[:2])
    axes[2].set_ylim(extent[2:])
    axes[2].set_title("overlay", fontsize=8)
    return fig


def plot_attribution(image: np.ndarray, heatmap: np.ndarray, path, *, title: str = "", cmap: str = "jet",
                     symmetric: bool = False) -> Path:
    """:func:`attribution_figure` written to ``path`` (PNG) under ``title``."""
    return _save_figure(attribution_figure(image, heatmap, cmap=cmap, symmetric=symmetric), path, title)


def plot_class_model(image: np.ndarray, scores: np.ndarray, path, *, title: str = "") -> Path:
    """The class-model image (min-max scaled) beside its score history."""
    plt = _plt()
    img = _minmax(np.asarray(image, np.float32))
    img = img[..., 0] if img.shape[-1] == 1 else img
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.3))
    axes[0].imshow(img, cmap="gray" if img.ndim == 2 else None)
    axes[0].axis("off")
    axes[0].set_title("class model (min-max scaled)", fontsize=8)
    axes[1].plot(np.asarray(scores))
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("class score S_c (logit)")
    return _save_figure(fig, path, title)


def plot_neighbours(query_image: np.ndarray, images: np.ndarray, result: dict, path, *,
                    labels: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Two rows: the query and its feature-space neighbours, then the query and its pixel-space
    neighbours (:func:`neighbours`); ``images``: display images ``(N, h, w[, 3])`` in [0, 1] (or a mapping
    from the neighbours' indices to them); ``labels``: a name per image of ``images``."""
    tiles, titles = [], []
    for space in ("feature", "pixel"):
        idx, dist = result[space]
        tiles.append(query_image)
        titles.append(f"query ({space})")
        for i, d in zip(idx, dist):
            tiles.append(images[int(i)])
            titles.append((f"{labels[int(i)]} " if labels is not None else "") + f"d={d:.3g}")
    return plot_grid(tiles, path, titles=titles, ncols=len(result["feature"][0]) + 1, normalize=None,
                     title=title or "nearest neighbours: feature space (top), pixel space (bottom)")


def plot_fixed_filters(image: np.ndarray, path, names: Sequence[str] | None = None, *, padding: int = 1) -> Path:
    """The 2-D ``image`` and its responses to the classic fixed filters (:func:`apply_filter`)."""
    names = list(names or FIXED_FILTERS)
    img = np.asarray(image, np.float32)
    tiles = [img] + [apply_filter(img, n, padding=padding) for n in names]
    return plot_grid(tiles, path, titles=["image"] + names, ncols=min(len(tiles), 5), normalize="each",
                     tile_inches=1.8, title="classic fixed filters (cross-correlation, zoo.layers.conv2d)")
