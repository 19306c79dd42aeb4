"""What a checkpoint holds is checked against (``train/checkpoint.py`` re-exports these): the CRC-32
of every array stored with it, finite values, and the structure of the train state it restores into."""
from __future__ import annotations

import logging
import zlib

import jax
import numpy as np

from train.checkpoint_errors import CorruptCheckpointError, WorkdirMismatchError
from train.step import all_finite

log = logging.getLogger("train.checkpoint")


def leaf_names(tree) -> list[str]:
    """``/``-joined paths of the leaves: the same for a train state and the nested dicts it restores to
    (``opt_state/inner_state/0/mu/conv1/kernel``)."""
    def key(k):
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                return str(getattr(k, attr))
        return str(k)

    return ["/".join(key(k) for k in path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def checksums(tree) -> dict[str, str]:
    """CRC-32 of every leaf's bytes, by leaf name (a flipped bit anywhere changes it)."""
    return {n: f"{zlib.crc32(np.ascontiguousarray(x).view(np.uint8).reshape(-1)):08x}"
            for n, x in zip(leaf_names(tree), jax.tree.leaves(tree))}


def verify(state, meta: dict) -> None:
    """CorruptCheckpointError unless ``state`` matches the checksums stored in ``meta`` (none stored:
    a checkpoint from before checksums, nothing to compare) and every value is finite."""
    expected = (meta.get("checksums") or {}).get("crc32")
    if expected is not None:
        found = checksums(state)
        bad = sorted(n for n in expected.keys() | found.keys() if expected.get(n) != found.get(n))
        if bad:
            raise CorruptCheckpointError(f"content checksum mismatch in {', '.join(bad[:3])}"
                                         + (f" and {len(bad) - 3} more" if len(bad) > 3 else ""))
    if not all_finite(state):
        raise CorruptCheckpointError("non-finite values (NaN or Inf) in the stored state, which is never written")


def into(template, raw, *, where: str):
    """The restored nested dicts ``raw`` in the structure of ``template`` (a state or its
    ``jax.eval_shape``); WorkdirMismatchError naming the differences if they do not fit."""
    names, treedef = leaf_names(template), jax.tree.structure(template)
    if (isinstance(raw, dict) and raw.get("ema_params") and not raw.get("ema_batch_stats")
            and any(n.startswith("ema_batch_stats/") for n in names)):
        # a checkpoint from before the BatchNorm statistics' EMA (2026-12-02): it starts from the statistics
        log.info("%s has a parameter EMA without the BatchNorm statistics' EMA (an older run): that starts "
                 "from the current statistics", where)
        raw = {**raw, "ema_batch_stats": raw.get("batch_stats", {})}
    found = dict(zip(leaf_names(raw), jax.tree.leaves(raw)))
    wanted = dict(zip(names, jax.tree.leaves(template)))
    diff = sorted(set(names) ^ set(found)) + sorted(n for n in names if n in found and
                                                     tuple(np.shape(found[n])) != tuple(wanted[n].shape))
    if diff:
        raise WorkdirMismatchError(
            f"{where} does not fit this run's train state (another optimizer, EMA, precision or model options?): "
            f"{len(diff)} leaves differ, e.g. {', '.join(diff[:4])}; nothing was changed")
    return jax.tree_util.tree_unflatten(treedef, [np.asarray(found[n], wanted[n].dtype) for n in names])
