"""Nearest neighbours in feature space and in pixel space (Krizhevsky et al. 2012, fig. 4: images
whose last hidden layer is closest to the query's)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_positive_int
from zoo.features import features
from zoo.inspect.inputs import as_batch, host_batch

@functools.partial(jax.jit, static_argnums=(0, 3))
def _embed(model, variables, x, layer):
    f = features(model, variables, x, [layer])[layer]
    return f.reshape(f.shape[0], -1).astype(jnp.float32)


def embed(model, variables, images, *, layer: str = "pre_logits", batch_size: int = 256) -> np.ndarray:
    """Features ``(N, D)`` (flattened) of ``images`` ``(N, H, W, C)`` at ``layer`` (default the
    penultimate vector ``pre_logits``), in batches of ``batch_size`` (the last one padded)."""
    check_positive_int("batch_size", batch_size)
    images = host_batch(images, "images")
    out = []
    for i in range(0, len(images), batch_size):
        chunk = images[i:i + batch_size]
        n = len(chunk)
        if n < batch_size and len(images) > batch_size:
            chunk = np.concatenate([chunk, np.zeros((batch_size - n, *chunk.shape[1:]), chunk.dtype)])
        out.append(np.asarray(_embed(model, variables, jnp.asarray(chunk), layer))[:n])
    return np.concatenate(out)


def nearest_neighbours(query, database, k: int = 5, metric: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """``(indices (Q, k), distances (Q, k))`` of the ``k`` rows of ``database`` ``(N, D)`` nearest each
    row of ``query`` ``(Q, D)`` (or ``(D,)``), nearest first. ``metric``: 'euclidean' (L2) or 'cosine'
    (1 - cosine similarity); fewer than ``k`` when ``database`` has fewer rows."""
    check_positive_int("k", k)
    q = np.atleast_2d(np.asarray(query, np.float64))
    db = np.asarray(database, np.float64)
    if db.ndim < 2 or db.shape[0] < 1:   # before the reshape, which cannot size the rows of an empty array
        raise ValueError(f"database: one or more rows (N, D) to search, got shape {db.shape}")
    db = db.reshape(len(db), -1)
    q = q.reshape(len(q), -1)
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"database: rows of {q.shape[1]} values like the query's, got shape {db.shape}")
    if metric == "euclidean":
        d = np.sqrt(np.maximum((q * q).sum(1)[:, None] - 2 * q @ db.T + (db * db).sum(1)[None], 0.0))
    elif metric == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        dn = db / np.maximum(np.linalg.norm(db, axis=1, keepdims=True), 1e-12)
        d = 1.0 - qn @ dn.T
    else:
        raise ValueError(f"metric={metric!r}: allowed values are ('euclidean', 'cosine')")
    k = min(k, db.shape[0])
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, 1)


def neighbours(model, variables, query, images, k: int = 5, *, layer: str = "pre_logits",
               metric: str = "euclidean", embeddings: np.ndarray | None = None) -> dict:
    """The ``k`` images of ``images`` ``(N, H, W, C)`` nearest the query image ``(H, W, C)`` in feature
    space (``layer``, default ``pre_logits``, as Krizhevsky et al. 2012 fig. 4 with the last hidden
    layer) and, for comparison, in pixel space (normalised pixels); both with ``metric`` (default
    'euclidean', as the AlexNet paper). ``embeddings``: precomputed :func:`embed` of ``images``.
    Returns ``{'feature': (indices (k,), distances (k,)), 'pixel': (indices, distances)}``."""
    q = as_batch(query, "query")
    if q.shape[0] != 1:
        raise ValueError(f"neighbours takes one query image, got a batch of {q.shape[0]}")
    images = host_batch(images, "images")
    if images.shape[1:] != q.shape[1:]:
        raise ValueError(f"images: a batch (N, H, W, C) of the query's size {q.shape[1:]}, got shape {images.shape}")
    db = embed(model, variables, images, layer=layer) if embeddings is None else np.asarray(embeddings)
    if len(db) != len(images):
        raise ValueError(f"embeddings: one row per image of images ({len(images)}), got {len(db)} (zi.embed(model, "
                         f"variables, images, layer={layer!r}))")
    qf = embed(model, variables, q, layer=layer)
    if embeddings is not None and (db.ndim != 2 or db.shape[1] != qf.shape[1]):
        raise ValueError(f"embeddings: rows of {qf.shape[1]} values, the features at layer={layer!r} "
                         f"(zi.embed(model, variables, images, layer={layer!r})), got shape {db.shape}")
    fi, fd = nearest_neighbours(qf, db, k, metric)
    pi, pd = nearest_neighbours(np.asarray(q).reshape(1, -1), np.asarray(images).reshape(len(images), -1), k, metric)
    return {"feature": (fi[0], fd[0]), "pixel": (pi[0], pd[0])}
