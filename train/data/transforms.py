"""Image preprocessing: one JSON-able ``preprocessing`` dict drives train and eval transforms.

The dict is built once per pipeline (``make_preprocessing``) and stored with checkpoints, so that
``preprocess_eval(images, preprocessing)`` rebuilds exactly the evaluation transform without the config.
Its fields::

    version            1
    dataset            name of the dataset the statistics come from
    image_size         [H, W] fed to the model
    channels           C fed to the model
    source_channels    channels of the stored images (1 or 3)
    channel_conversion 'none' | 'gray_to_rgb' (replicate) | 'rgb_to_gray' (ITU-R 601 luma)
    mean, std          per model channel, on the 0..1 scale: x = (pixel / 255 - mean) / std
    eval_resize        'resize' (straight to H x W) | 'center_crop' (centred region of aspect W:H and
                       crop_fraction of the short side, resized to H x W: torchvision's
                       Resize(resize_size) + CenterCrop(size) in one step, its integer geometry
                       exactly for square sizes)
    crop_fraction      the model's ``ModelInfo.crop_fraction``: 0.875 (224 / 256), Inception v3 299 / 342;
                       published weights: their crop_size / resize_size
    interpolation      'bilinear' | 'bicubic' (PIL's antialiased filters, as torchvision on PIL images);
                       absent in dicts stored before it existed: bilinear (``complete``)
    train_resize       how training crops under 'imagenet' are resized: 'antialiased' (PIL, as
                       torchvision's RandomResizedCrop on PIL images) | 'fast' (OpenCV's bilinear
                       sampling without antialiasing, as ``tf.image.resize`` in big_vision's
                       inception_crop and the Flax ImageNet example; bilinear only); absent in dicts
                       stored before it existed: 'antialiased'. Evaluation always resizes with PIL.
    augment            train-time augmentation: 'none' | 'mnist' | 'cifar' | 'imagenet'
    augment_params     {'max_shift'} (mnist), {'pad'} (cifar), {'scale', 'ratio'} (imagenet)

Geometric work on fixed-size batches is vectorised numpy (separable, antialiased bilinear resize
matrices; per-batch random crops and flips); variable-size images (ImageNet-style datasets, folders)
go through PIL one by one (a training crop cut out, then resized; the eval crop one ``resize(box=...)``).

Random parameters are drawn by the caller for the whole global batch (``draw_random``) and sliced to
the process-local part, so a batch's content does not depend on how many processes share it.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import numpy as np

AUGMENTATIONS = ("none", "mnist", "cifar", "imagenet")
EVAL_RESIZE = ("resize", "center_crop")
INTERPOLATIONS = ("bilinear", "bicubic")
TRAIN_RESIZE = ("antialiased", "fast")
CROP_FRACTION = 0.875
# fields added after version 1, with the behaviour before them
ADDED_FIELDS = {"interpolation": "bilinear", "train_resize": "antialiased"}
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3.0 / 4.0, 4.0 / 3.0)
RRC_ATTEMPTS = 10
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
VERSION = 1


def make_preprocessing(*, dataset: str, image_shape: Sequence[int], source_channels: int,
                       mean: Sequence[float], std: Sequence[float], eval_resize: str, augment: str,
                       crop_fraction: float = CROP_FRACTION, interpolation: str = "bilinear",
                       train_resize: str = "antialiased") -> dict[str, Any]:
    """The JSON-able description of a pipeline's preprocessing (see the module docstring).

    ``mean``/``std`` are per source channel; they are converted here to the model's channels."""
    h, w, c = (int(v) for v in image_shape)
    if not 0.0 < float(crop_fraction) <= 1.0:
        raise ValueError(f"crop_fraction={crop_fraction!r}: must be in (0, 1]")
    if c not in (1, 3):
        raise ValueError(f"image_shape channels must be 1 or 3, got {c}")
    if source_channels not in (1, 3):
        raise ValueError(f"source_channels must be 1 or 3, got {source_channels}")
    if augment not in AUGMENTATIONS:
        raise ValueError(f"data.augment={augment!r}: allowed values are 'auto', {', '.join(map(repr, AUGMENTATIONS))}")
    if eval_resize not in EVAL_RESIZE:
        raise ValueError(f"eval_resize={eval_resize!r}: allowed values are {EVAL_RESIZE}")
    for field, value, allowed in (("interpolation", interpolation, INTERPOLATIONS),
                                  ("train_resize", train_resize, TRAIN_RESIZE)):
        if value not in allowed:
            raise ValueError(f"data.{field}={value!r}: allowed values are {', '.join(map(repr, allowed))}")
    if train_resize == "fast" and augment == "imagenet" and interpolation != "bilinear":
        raise ValueError(f"data.train_resize='fast' resizes bilinearly; data.interpolation={interpolation!r} needs "
                         f"data.train_resize='antialiased'")
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if len(mean) != source_channels or len(std) != source_channels:
        raise ValueError(f"mean/std need {source_channels} values, got {mean} / {std}")
    if source_channels == c:
        conversion = "none"
    elif source_channels == 1:
        conversion, mean, std = "gray_to_rgb", mean * 3, std * 3
    else:  # luma of the per-channel statistics (std: an upper bound, good enough to scale to ~unit variance)
        conversion = "rgb_to_gray"
        mean = [float(np.dot(GRAY_WEIGHTS, mean))]
        std = [float(np.dot(GRAY_WEIGHTS, std))]
    params: dict[str, Any] = {}
    if augment == "mnist":
        params = {"max_shift": max(1, round(2 * min(h, w) / 28))}
    elif augment == "cifar":
        params = {"pad": max(1, round(4 * min(h, w) / 32))}
    elif augment == "imagenet":
        params = {"scale": list(RRC_SCALE), "ratio": list(RRC_RATIO)}
    return {
        "version": VERSION, "dataset": dataset, "image_size": [h, w], "channels": c,
        "source_channels": int(source_channels), "channel_conversion": conversion,
        "mean": mean, "std": std, "eval_resize": eval_resize, "crop_fraction": float(crop_fraction),
        "interpolation": interpolation, "train_resize": train_resize, "augment": augment, "augment_params": params,
    }


def for_weights(entry) -> dict[str, Any]:
    """The evaluation preprocessing of published weights (a ``zoo.weights.WeightEntry``), as
    torchvision's ``weights.transforms()``: resize the short side to ``resize_size`` with its
    interpolation, centre-crop ``crop_size`` (one PIL resize of the centred region), normalise with its
    mean / std."""
    return make_preprocessing(dataset=f"{entry.model}:{entry.tag}", image_shape=(entry.crop_size, entry.crop_size, 3),
                              source_channels=3, mean=entry.mean, std=entry.std,
                              eval_resize="center_crop", augment="none",
                              crop_fraction=entry.crop_size / entry.resize_size, interpolation=entry.interpolation)


def complete(pp: dict) -> dict:
    """``pp`` with the fields added since version 1 (:data:`ADDED_FIELDS`) at the value that means
    what such a dict meant before them: a checkpoint's stored preprocessing is read as it was."""
    return {**ADDED_FIELDS, **pp}


# ----------------------------------------------------------------------------------------- random draws
def draw_random(rng: np.random.Generator, n: int, augment: str) -> dict[str, np.ndarray]:
    """Random parameters for ``n`` examples (a whole global batch), consumed by ``apply``."""
    if augment == "none":
        return {}
    if augment in ("mnist", "cifar"):  # offsets as uniforms: scaled by the pad / shift in ``apply``
        return {"offset": rng.random((n, 2)), "flip": rng.random(n) < 0.5}
    if augment == "imagenet":
        return {"rrc": rng.random((n, RRC_ATTEMPTS, 4)), "flip": rng.random(n) < 0.5}
    raise ValueError(f"unknown augment {augment!r}")


def slice_random(draws: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    return {k: v[start:stop] for k, v in draws.items()}


# ----------------------------------------------------------------------------------------- geometry
@functools.lru_cache(maxsize=128)
def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of an antialiased bilinear resize along one axis: a triangle filter
    widened by the scale when shrinking, pixel centres at i + 0.5 (PIL's convention); rows sum to 1."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    src = np.arange(n_in) + 0.5
    wts = np.maximum(0.0, 1.0 - np.abs(src[None, :] - centres[:, None]) / support)
    return (wts / wts.sum(1, keepdims=True)).astype(np.float32)


def resize_batch(x: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize a batch (n, h, w, c) to (n, H, W, c): float32, not rounded. Identity sizes: unchanged."""
    n, h, w, c = x.shape
    big_h, big_w = size
    if (h, w) == (big_h, big_w):
        return x
    x = x.astype(np.float32, copy=False)
    if h != big_h:
        x = np.matmul(_resize_matrix(h, big_h), x.reshape(n, h, w * c)).reshape(n, big_h, w, c)
    if w != big_w:
        m = _resize_matrix(w, big_w)
        x = np.matmul(m, x.reshape(n * big_h, w, c)).reshape(n, big_h, big_w, c)
    return x


def _centre_box(h: int, w: int, size: Sequence[int], crop_fraction: float) -> tuple[float, float, float, float]:
    """Centred (left, top, right, bottom) region of aspect W:H covering crop_fraction of the short side.

    Square sizes take torchvision's geometry exactly (``Resize(r)`` + ``CenterCrop(c)`` with
    r = round(c / crop_fraction)): the resized long side truncated to an integer, the crop offset
    ``int(round((resized - c) / 2))`` (half to even), that box mapped back to the source by each axis'
    scale; one resize of it then equals resizing the whole image and cropping (up to 8-bit rounding)."""
    big_h, big_w = size
    if big_h == big_w:
        r = int(round(big_h / crop_fraction))
        if w <= h:
            new_w, new_h = r, int(r * h / w)
        else:
            new_h, new_w = r, int(r * w / h)
        top, left = int(round((new_h - big_h) / 2.0)), int(round((new_w - big_w) / 2.0))
        sy, sx = h / new_h, w / new_w
        return left * sx, top * sy, (left + big_w) * sx, (top + big_h) * sy
    if h * big_w > w * big_h:  # taller than the target aspect: width limits
        bw, bh = float(w), w * big_h / big_w
    else:
        bh, bw = float(h), h * big_w / big_h
    bw, bh = bw * crop_fraction, bh * crop_fraction
    left, top = (w - bw) / 2.0, (h - bh) / 2.0
    return left, top, left + bw, top + bh


def _rrc_box(h: int, w: int, u: np.ndarray, scale: Sequence[float], ratio: Sequence[float]) -> tuple[int, int, int, int]:
    """Inception random-resized-crop region (torchvision's algorithm) from uniforms u: (attempts, 4)."""
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for a in range(u.shape[0]):
        target = area * (scale[0] + (scale[1] - scale[0]) * u[a, 0])
        aspect = math.exp(log_r[0] + (log_r[1] - log_r[0]) * u[a, 1])
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top = min(int(u[a, 2] * (h - ch + 1)), h - ch)
            left = min(int(u[a, 3] * (w - cw + 1)), w - cw)
            return left, top, left + cw, top + ch
    in_ratio = w / h  # fallback: central crop, aspect clamped to the ratio range
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    top, left = (h - ch) // 2, (w - cw) // 2
    return left, top, left + cw, top + ch


def _crop_region(img: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The integer region of ``img`` enclosing ``box`` (a view), and ``box`` in it (fractional: reduced decoding)."""
    left, top, right, bottom = (float(b) for b in box)
    eps = 1e-6   # a scaled integer box off by rounding: no extra row or column
    x0, y0 = max(0, math.floor(left + eps)), max(0, math.floor(top + eps))
    x1, y1 = min(img.shape[1], math.ceil(right - eps)), min(img.shape[0], math.ceil(bottom - eps))
    sub = (max(0.0, left - x0), max(0.0, top - y0), min(x1 - x0, right - x0), min(y1 - y0, bottom - y0))
    return img[y0:y1, x0:x1], sub


def _pil_resize(img: np.ndarray, size: Sequence[int], box: Sequence[float],
                interpolation: str = "bilinear", flip: bool = False) -> np.ndarray:
    """The ``box`` region of ``img`` (h, w, c) resized to ``size`` (antialiased, ``interpolation``
    'bilinear' or 'bicubic'), mirrored horizontally when ``flip``: (H, W, c) uint8."""
    from PIL import Image  # noqa: PLC0415

    big_h, big_w = size
    c = img.shape[-1]
    pil = Image.fromarray(img[..., 0] if c == 1 else img)
    resample = Image.Resampling.BICUBIC if interpolation == "bicubic" else Image.Resampling.BILINEAR
    pil = pil.resize((big_w, big_h), resample, box=tuple(float(b) for b in box))
    return np.asarray(pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else pil).reshape(big_h, big_w, c)


def _fast_resize(img: np.ndarray, size: Sequence[int], box: Sequence[float], flip: bool = False) -> np.ndarray:
    """``train_resize='fast'``: the ``box`` region of ``img`` (h, w, c) sampled bilinearly onto ``size``
    (pixel centres at +0.5, edges clamped, no antialiasing: ``jax.image.scale_and_translate`` with
    ``antialias=False``), mirrored when ``flip``, in one OpenCV ``warpAffine``: (H, W, c) uint8."""
    cv2 = opencv()
    left, top, right, bottom = (float(b) for b in box)
    big_h, big_w = size
    sx, sy = (right - left) / big_w, (bottom - top) / big_h
    # output pixel (x, y) reads input (left + (x + 0.5) sx - 0.5, top + (y + 0.5) sy - 0.5); flipped, x -> W - 1 - x
    m = np.array([[-sx if flip else sx, 0.0, left + ((big_w - 0.5) if flip else 0.5) * sx - 0.5],
                  [0.0, sy, top + 0.5 * sy - 0.5]])
    out = cv2.warpAffine(np.ascontiguousarray(img), m, (big_w, big_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(big_h, big_w, img.shape[-1])


def opencv():
    """The ``cv2`` module (``train_resize='fast'``), or ImportError saying how to install it.

    OpenCV is set to one thread in this process (``cv2.setNumThreads(1)``, once): the pipeline resizes
    one image at a time in each of grain's threads and worker processes, where OpenCV's own threads
    only cost CPU time (ImageNet-size crops, one process: 519 against 620-693 images per CPU second)."""
    try:
        import cv2  # noqa: PLC0415
    except ImportError as e:
        raise ImportError("data.train_resize='fast' needs OpenCV: pip install opencv-python-headless "
                          "(or the project's jpeg extra: pip install -e '.[jpeg]')") from e
    _one_thread(cv2)
    return cv2


@functools.cache
def _one_thread(cv2) -> None:
    cv2.setNumThreads(1)


def _pixels(a: np.ndarray) -> np.ndarray:
    """(..., C) C-contiguous array -> (...) view of whole pixels (void items of C values): per-pixel
    copies then run with long inner loops instead of loops of length C (3x-5x faster)."""
    return a.view(np.dtype((np.void, a.itemsize * a.shape[-1])))[..., 0]


def _crop_flip(x: np.ndarray, pad: int, offsets: np.ndarray | None, flip: np.ndarray | None) -> np.ndarray:
    """Zero-pad by ``pad`` on every side, crop back to the input size at integer offsets (n, 2) in
    [0, 2 pad], and mirror horizontally where ``flip``. Returns a new array."""
    n, h, w, c = x.shape
    if pad:
        src = np.zeros((n, h + 2 * pad, w + 2 * pad, c), x.dtype)
        src[:, pad:pad + h, pad:pad + w] = x
    else:
        src = np.ascontiguousarray(x)
    out = np.empty((n, h, w, c), x.dtype)
    sp, op = _pixels(src), _pixels(out)
    for i in range(n):
        oy, ox = (int(offsets[i, 0]), int(offsets[i, 1])) if pad else (0, 0)
        window = sp[i, oy:oy + h, ox:ox + w]
        op[i] = window[:, ::-1] if flip is not None and flip[i] else window
    return out


def crops(pp: dict, *, train: bool = False) -> bool:
    """Whether ``geometric`` resizes a region of each image (:func:`crop_box`) rather than all of it."""
    return (train and pp["augment"] == "imagenet") or pp["eval_resize"] == "center_crop"


def resizes_with_opencv(pp: dict, *, train: bool = False) -> bool:
    """Whether ``geometric`` resizes with OpenCV (:func:`_fast_resize`): training crops under
    'imagenet' with ``train_resize='fast'``."""
    return train and pp["augment"] == "imagenet" and complete(pp)["train_resize"] == "fast"


def crop_box(k: int, h: int, w: int, pp: dict, *, train: bool = False, rand: dict | None = None):
    """The (left, top, right, bottom) region of the k-th image (h x w) that ``geometric`` resizes to
    ``image_size``: the Inception random-resized crop when training under 'imagenet', else the centre
    box under 'center_crop' (only when :func:`crops`)."""
    if train and pp["augment"] == "imagenet":
        params = pp["augment_params"]
        return _rrc_box(h, w, rand["rrc"][k], params["scale"], params["ratio"])
    return _centre_box(h, w, tuple(pp["image_size"]), pp["crop_fraction"])


def geometric(images, pp: dict, *, train: bool = False, rand: dict | None = None, boxes=None) -> np.ndarray:
    """Crop/resize/augment to (n, H, W, source_channels): uint8 or float32 (resized, unrounded).

    ``images``: a uint8 array (n, h, w, c) or a list of (h_i, w_i, c) uint8 arrays. ``boxes``: the
    regions :func:`crop_box` gives, already computed (per image, in its coordinates; None: compute it),
    e.g. by a reader that decoded a JPEG at a reduced size (``train.data.decode``)."""
    size = tuple(pp["image_size"])
    augment = pp["augment"] if train else "none"
    rand = rand or {}
    n = len(images)
    interp = complete(pp)["interpolation"]
    if crops(pp, train=train):  # one image at a time, flipped as it is resized, into one batch
        boxes = boxes if boxes is not None else [None] * n
        flips = rand["flip"] if augment == "imagenet" else np.zeros(n, bool)
        fast = resizes_with_opencv(pp, train=train)
        x = np.empty((n, *size, images[0].shape[-1]), np.uint8) if n else None
        for i, (img, box) in enumerate(zip(images, boxes)):
            box = box if box is not None else crop_box(i, img.shape[0], img.shape[1], pp, train=train, rand=rand)
            if augment == "imagenet":   # a training crop: cut out, then resized (edges clamp at the crop)
                img, box = _crop_region(img, box)
            x[i] = (_fast_resize(img, size, box, flip=bool(flips[i])) if fast
                    else _pil_resize(img, size, box, interp, flip=bool(flips[i])))
    elif interp != "bilinear":  # 'resize' with another filter: PIL, one image at a time
        x = np.stack([_pil_resize(img, size, (0, 0, img.shape[1], img.shape[0]), interp)
                      for img in images]) if n else None
    elif isinstance(images, np.ndarray):
        x = resize_batch(images, size)
    else:  # variable sizes under 'resize': one image at a time, same arithmetic as a batch
        x = np.concatenate([resize_batch(img[None].astype(np.float32), size) for img in images]) if n else None
    if x is None:
        return np.zeros((0, *size, pp["source_channels"]), np.float32)
    if augment in ("mnist", "cifar"):
        params = pp["augment_params"]
        p = params["max_shift"] if augment == "mnist" else params["pad"]
        offsets = np.minimum((rand["offset"] * (2 * p + 1)).astype(np.int64), 2 * p)
        x = _crop_flip(x, p, offsets, rand["flip"] if augment == "cifar" else None)
    return x


@functools.lru_cache(maxsize=32)
def _affine_row(mean: tuple, std: tuple, reps: int) -> tuple[np.ndarray, np.ndarray]:
    """x * scale - shift = (x / 255 - mean) / std, tiled over a flattened (H * W * C) row."""
    m, s = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    return (np.tile(1.0 / (255.0 * s), reps).astype(np.float32), np.tile(m / s, reps).astype(np.float32))


def normalize(x: np.ndarray, pp: dict) -> np.ndarray:
    """(n, H, W, source_channels) pixels 0..255 -> (n, H, W, channels) float32, normalised."""
    conv = pp["channel_conversion"]
    mean, std = tuple(pp["mean"]), tuple(pp["std"])
    if conv == "rgb_to_gray":
        x = np.matmul(x.astype(np.float32, copy=False), np.asarray(GRAY_WEIGHTS, np.float32)[:, None])
    repeat = conv == "gray_to_rgb"
    if repeat and len(set(mean)) == 1 and len(set(std)) == 1:
        mean, std = mean[:1], std[:1]  # normalise the single channel, then replicate
    elif repeat:
        x, repeat = np.repeat(x, 3, axis=-1), False
    n = x.shape[0]
    out = np.empty(x.shape, np.float32)  # a fresh array: x (uint8 or float) is converted as it is scaled
    flat, src = out.reshape(n, -1), x.reshape(n, -1)
    if len(set(mean)) == 1 and len(set(std)) == 1:
        np.multiply(src, np.float32(1.0 / (255.0 * std[0])), out=flat, dtype=np.float32)
        flat -= np.float32(mean[0] / std[0])
    else:
        scale, shift = _affine_row(mean, std, flat.shape[1] // len(mean))
        np.multiply(src, scale, out=flat, dtype=np.float32)
        flat -= shift
    return np.repeat(out, 3, axis=-1) if repeat else out


def apply(images, pp: dict, *, train: bool = False, rand: dict | None = None, boxes=None) -> np.ndarray:
    """The whole transform: geometric (+ augmentation when ``train``), channels, normalisation."""
    return normalize(geometric(images, pp, train=train, rand=rand, boxes=boxes), pp)


# ----------------------------------------------------------------------------------------- user images
def _to_source_channels(img: np.ndarray, channels: int) -> np.ndarray:
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 4:  # RGBA: drop alpha
        img = img[..., :3]
    if img.shape[-1] == 2:  # LA: drop alpha
        img = img[..., :1]
    if img.shape[-1] == channels:
        return img
    if channels == 3:
        return np.repeat(img, 3, axis=-1)
    luma = img.astype(np.float32) @ np.asarray(GRAY_WEIGHTS, np.float32)
    return np.clip(np.round(luma), 0, 255).astype(np.uint8)[..., None]


def preprocess_eval(images, preprocessing: dict) -> np.ndarray:
    """Evaluation preprocessing of user images, identical to the eval pipeline's.

    ``images``: one uint8 image (h, w) / (h, w, c), a batch (n, h, w, c), or a list of images of any
    sizes; grayscale, RGB and RGBA are all accepted (converted to the dataset's stored channels first).
    ``preprocessing``: a pipeline's ``preprocessing`` dict (as stored with a checkpoint).
    Returns float32 (n, H, W, C) ready for the model."""
    if preprocessing.get("version") != VERSION:
        raise ValueError(f"preprocessing version {preprocessing.get('version')!r} is not supported (expected {VERSION})")
    src_c = preprocessing["source_channels"]
    if isinstance(images, np.ndarray) and images.ndim == 4:
        batch = [images[i] for i in range(images.shape[0])]
    elif isinstance(images, np.ndarray) or not isinstance(images, (list, tuple)):
        batch = [np.asarray(images)]
    else:
        batch = [np.asarray(im) for im in images]
    fixed = []
    for im in batch:
        if im.dtype != np.uint8:
            if not np.issubdtype(im.dtype, np.integer) or im.size and (im.min() < 0 or im.max() > 255):
                raise ValueError(f"preprocess_eval expects uint8 pixels 0..255, got dtype {im.dtype}")
            im = im.astype(np.uint8)
        if im.ndim not in (2, 3) or im.ndim == 3 and not 1 <= im.shape[2] <= 4:
            hint = (" (channels first, as in PyTorch? images here are channels last: np.moveaxis(x, 0, -1))"
                    if im.ndim == 3 and im.shape[0] in (1, 3, 4) else "")
            raise ValueError(f"images: an image must be (h, w) or (h, w, c) with c in 1..4 (gray, gray + alpha, "
                             f"RGB, RGBA), got shape {im.shape}{hint}")
        if im.shape[0] == 0 or im.shape[1] == 0:
            raise ValueError(f"images: an image has no pixels (shape {im.shape})")
        fixed.append(_to_source_channels(im, src_c))
    shapes = {im.shape for im in fixed}
    if len(shapes) == 1:
        fixed = np.stack(fixed)
    return apply(fixed, preprocessing, train=False)
