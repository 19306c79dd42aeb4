"""Converted weights in the cache, so that a second load neither downloads nor converts again.

``<cache>/converted/<model>-<tag>-<sha256>.zoo1.safetensors`` holds the Flax variables converted from
the checked source file (keys ``params/conv1/kernel``; metadata: format, model, tag, source URL and
hash). The name carries the source's hash, so another file (a re-registered tag) never reads a stale
conversion; the file is written under a unique temporary name and renamed when complete. A cached
conversion that cannot be read, or whose metadata does not match the entry, is converted again.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
from flax import traverse_util

from zoo.files import written_atomically
from zoo.weights.catalogue import WeightEntry
from zoo.weights.download import cache_root

FORMAT = "zoo1"
log = logging.getLogger("zoo")


def converted_path(entry: WeightEntry, cache_dir=None) -> Path:
    return cache_root(cache_dir) / "converted" / f"{entry.model}-{entry.tag}-{entry.sha256}.{FORMAT}.safetensors"


def _metadata(entry: WeightEntry) -> dict[str, str]:
    return {"format": FORMAT, "model": entry.model, "tag": entry.tag, "url": entry.url, "sha256": entry.sha256}


def tensors_sha256(flat: dict[str, np.ndarray]) -> str:
    """sha256 over the tensors in name order: each name, dtype, shape and bytes."""
    h = hashlib.sha256()
    for k in sorted(flat):
        v = np.ascontiguousarray(flat[k])
        h.update(f"{k}|{v.dtype.str}|{v.shape}|".encode())
        h.update(v.data)
    return h.hexdigest()


def read(entry: WeightEntry, cache_dir=None) -> dict | None:
    """The cached variables of ``entry`` (``{'params': ..., 'batch_stats': ...}``), or None."""
    path = converted_path(entry, cache_dir)
    if not path.is_file():
        return None
    from safetensors import SafetensorError, safe_open  # noqa: PLC0415

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = dict(f.metadata() or {})
            checksum = meta.pop("tensors_sha256", None)
            if meta != _metadata(entry):
                log.warning("%s: converted for another source, converting again", path)
                return None
            flat = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        log.warning("%s: unreadable (%s), converting again", path, e)
        return None
    if checksum != tensors_sha256(flat):
        log.warning("%s: damaged (%s), converting again", path,
                    "no checksum: written by an older version" if checksum is None else "its tensors do not match "
                    "their sha256")
        return None
    return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def write(entry: WeightEntry, variables: dict, cache_dir=None) -> Path:
    """Store converted ``variables`` for ``entry`` (atomic: a complete file or none)."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    path = converted_path(entry, cache_dir)
    flat = {"/".join(k): np.ascontiguousarray(np.asarray(v)) for k, v in traverse_util.flatten_dict(variables).items()}
    with written_atomically(path) as tmp:
        save_file(flat, tmp, metadata={**_metadata(entry), "tensors_sha256": tensors_sha256(flat)})
    return path
