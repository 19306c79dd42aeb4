"""Image files to RGB pixels for folder datasets.

JPEGs (YCbCr or grayscale) go through simplejpeg (libjpeg-turbo, the optional ``jpeg`` extra) when
it is installed: the same pixels as PIL's decoder for a full-size decode, without PIL's image object.
With a ``region`` (the crop the transform will resize to ``out_size``), a JPEG is decoded at the
smallest of libjpeg-turbo's DCT scales 1/2, 1/4, 1/8 at which that crop still has ``out_size`` pixels
or more, so the resize then shrinks by less; the crop is returned in the decoded image's coordinates. Anything
else (PNG, BMP, CMYK JPEGs, files simplejpeg refuses) is decoded by PIL at full size.

    pixels, box = read_rgb(path, region=lambda h, w: (left, top, right, bottom), out_size=(224, 224))
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

try:
    import simplejpeg
except ImportError:  # optional: PIL decodes everything then
    simplejpeg = None

JPEG_SOI = b"\xff\xd8"
SIMPLEJPEG_COLORSPACES = ("YCbCr", "Gray")   # CMYK / YCCK JPEGs: PIL (Adobe's inverted CMYK)
Box = tuple[float, float, float, float]      # (left, top, right, bottom) in pixels
DCT_FACTORS = (1, 2, 4, 8)                   # reduced-size decoding: 1/k of each side


def min_decoded_size(h: int, w: int, box: Box | None, out_size: Sequence[int] | None) -> tuple[int, int]:
    """The size to decode the whole h x w image at: the smallest of 1/2, 1/4, 1/8 at which ``box``
    still spans ``out_size`` = (H, W) pixels or more, else (0, 0): full size (also without a box or a
    size). Only these scales: libjpeg-turbo's other n/8 scales decode slower than full size here."""
    if box is None or out_size is None:
        return 0, 0
    need_h, need_w = h * out_size[0] / (box[3] - box[1]), w * out_size[1] / (box[2] - box[0])
    k = max((k for k in DCT_FACTORS if h / k >= need_h and w / k >= need_w), default=1)
    return (0, 0) if k == 1 else (math.ceil(h / k), math.ceil(w / k))


def read_rgb(path: str | Path, region: Callable[[int, int], Box | None] | None = None,
             out_size: Sequence[int] | None = None, *, reduce: bool = True) -> tuple[np.ndarray, Box | None]:
    """``(pixels (h, w, 3) uint8, box)``: the image at ``path`` and ``region(h, w)`` of its full size
    (None without ``region``), scaled to the decoded pixels. ``reduce=False``: always full size.
    A damaged file raises PIL's error."""
    data = Path(path).read_bytes()
    if simplejpeg is not None and data[:2] == JPEG_SOI:
        try:
            h, w, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        except ValueError:
            colorspace = None   # PIL below says what is wrong
        if colorspace in SIMPLEJPEG_COLORSPACES:
            box = region(h, w) if region is not None else None
            min_h, min_w = min_decoded_size(h, w, box, out_size) if reduce else (0, 0)
            try:
                img = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=min_h, min_width=min_w)
            except ValueError:
                img = None      # a recoverable error in the stream: PIL's verdict below
            if img is not None:
                return img, _scaled(box, img.shape[0] / h, img.shape[1] / w)
    from PIL import Image  # noqa: PLC0415

    with Image.open(io.BytesIO(data)) as im:
        img = _rgb(im)
    return img, region(img.shape[0], img.shape[1]) if region is not None else None


def blocks_on_open(path) -> bool:
    """Whether ``path`` exists but is neither a file nor a folder (a FIFO, a device): ``open()`` would wait
    for ever, so readers refuse it as "not a regular file"."""
    return os.path.exists(path) and not (os.path.isfile(path) or os.path.isdir(path))


def grey_or_rgb(im) -> np.ndarray:
    """uint8 ``(h, w)`` of a grey PIL image, else ``(h, w, 3)`` (what ``zoo.predict`` reads). 16-bit grey
    levels (PIL mode I;16, or I) are scaled to 8 bits: PIL's ``convert('RGB')`` saturates them, every
    pixel above 255 white. Float pixels (mode F) state no scale, so they are refused (ValueError) rather
    than guessed."""
    if im.mode.startswith("I;16") or im.mode == "I":
        return np.clip(np.round(np.asarray(im, np.float64) / 257.0), 0, 255).astype(np.uint8)
    if im.mode == "F":
        raise ValueError("float pixels (PIL mode F) state no 8-bit scale; save the image with 8 or 16 bits")
    return np.asarray(im if im.mode in ("L", "RGB") else im.convert("RGB"))


def _rgb(im) -> np.ndarray:
    """uint8 ``(h, w, 3)`` of a PIL image (``grey_or_rgb``, grey repeated)."""
    px = grey_or_rgb(im)
    return np.repeat(px[..., None], 3, axis=-1) if px.ndim == 2 else px


def _scaled(box: Box | None, sy: float, sx: float) -> Box | None:
    if box is None or (sy == 1.0 and sx == 1.0):
        return box
    return box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy
