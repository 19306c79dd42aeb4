"""A class-folder dataset on disk (``folder:PATH``): its class folders, their image files, and the
checks that keep a run from training on something else than the user meant (split folders taken for
classes, one class, symlink loops, empty or unreadable classes)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from train.data import decode

log = logging.getLogger("train.data")

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                              ".pgm", ".pbm"})


def check_image(path: str) -> str | None:
    """None if the file looks like a readable image (header + PIL verify), else the reason."""
    from PIL import Image  # noqa: PLC0415

    try:
        if decode.blocks_on_open(path):
            return "not a regular file"
        if os.path.getsize(path) == 0:
            return "empty file"
        with Image.open(path) as im:
            im.verify()
        return None
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"


def class_dirs(root: Path) -> list[str]:
    return sorted(d.name for d in os.scandir(root) if d.is_dir() and not d.name.startswith("."))


_REPORTED_LINKS: set[str] = set()   # links not followed, reported once per process


def image_files(folder: Path):
    """Image files under ``folder``, sorted, depth first: a generator (``next()`` tells if there is one).
    Symlinked folders are followed, except one that leads back to ``folder``, to one of its parents
    (a loop, which would pull the other classes' images into this one) or to a folder already listed."""
    seen = {os.path.realpath(folder)}
    parents = {str(p) for p in Path(os.path.realpath(folder)).parents}

    def follow(dirpath: str, d: str) -> bool:
        real = os.path.realpath(os.path.join(dirpath, d))
        if real in seen or real in parents:
            if os.path.join(dirpath, d) in _REPORTED_LINKS:   # listed twice: the empty-class probe, then the listing
                return False
            _REPORTED_LINKS.add(os.path.join(dirpath, d))
            log.warning("%s: not following %s (it leads to %s, already listed or a parent)", folder,
                        os.path.join(dirpath, d), real)
            return False
        seen.add(real)
        return True

    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and follow(dirpath, d))
        yield from (os.path.join(dirpath, f) for f in sorted(filenames)
                    if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)


def drop_empty_classes(name: str, root: Path, classes: list[str], empty_classes: str, report: bool) -> list[str]:
    """``classes`` minus those whose folder under ``root`` has no image, as ``empty_classes`` says."""
    if empty_classes not in ("skip", "error", "keep"):
        raise ValueError(f"data.empty_classes={empty_classes!r}: allowed values are 'skip', 'error', 'keep'")
    empty = [c for c in classes if next(image_files(root / c), None) is None]
    listing = ", ".join(str(root / c) for c in empty[:10]) + (" ..." if len(empty) > 10 else "")
    if empty and empty_classes == "error":
        raise ValueError(f"{name}: class folder(s) without images: {listing} (data.empty_classes='skip' leaves them "
                         f"out, 'keep' keeps them as classes without examples)")
    if empty and empty_classes == "skip" and report:
        log.warning("%s: skipping %d class folder(s) without images: %s (data.empty_classes='skip'; 'keep' keeps them "
                    "as classes, 'error' stops)", name, len(empty), listing)
    return classes if empty_classes == "keep" else [c for c in classes if c not in empty]


def check_unreadable_classes(name: str, split: str, classes: list[str], listed: set[int], readable: set[int],
                             empty_classes: str) -> None:
    """Classes with image files in ``split`` but none readable: a class the run would never see. An error
    with ``data.empty_classes='error'``, else one warning (the class keeps its index: both splits must
    agree on the labels)."""
    lost = [classes[c] for c in sorted(listed - readable)]
    if not lost:
        return
    listing = ", ".join(lost[:10]) + (" ..." if len(lost) > 10 else "")
    if empty_classes == "error":
        raise ValueError(f"{name}: class(es) with no readable image in split {split!r}: {listing} "
                         f"(data.empty_classes='error')")
    log.warning("%s: class(es) with no readable image in split %r: %s; the run has no examples of them there",
                name, split, listing)


SPLIT_LIKE = ("train", "training", "test", "testing", "val", "valid", "validation", "eval", "evaluation", "dev")


def check_classes(name: str, root: Path, classes: list[str], *, train_split: str) -> None:
    """Class folders that a run would learn the wrong thing from: folders named like splits (``Train/``,
    ``validation/``: the model would learn which split an image is in) and a single class (a model of one
    class learns nothing; often ``folder:`` one level too high). One ValueError line each."""
    splits = [c for c in classes if c.lower() in SPLIT_LIKE]
    if splits:
        raise ValueError(f"{name}: class folders {splits} in {root} look like splits, not classes; set "
                         f"data.train_split and data.eval_split to the split folders' names (train_split is now "
                         f"{train_split!r}), or point folder: at one split's class folders")
    if len(classes) == 1:
        raise ValueError(f"{name}: one class folder ({classes[0]}) in {root}; a classifier needs two or more (is "
                         f"{root / classes[0]} the dataset's folder?)")
