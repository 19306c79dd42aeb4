"""The arguments every analysis takes: one image ``(H, W, C)`` or a batch ``(B, H, W, C)``, class
indices, the model's variables. Each check raises one ValueError line naming the argument and what is
allowed."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict

from zoo.summary import abstract_variables


def as_batch(x, arg: str = "x") -> jax.Array:
    """``(H, W, C)`` or ``(B, H, W, C)`` float images -> float32 ``(B, H, W, C)``. Integer images are
    refused (the analyses, like the models, take images normalised as in training), as are empty batches
    and images with NaN or infinite pixels (under jit a NaN gives plausible finite maps and predictions)."""
    return _batch(jnp.asarray(x), arg).astype(jnp.float32)


def host_batch(x, arg: str = "images") -> np.ndarray:
    """:func:`as_batch` kept in host memory (numpy), for image sets read in chunks (``zi.embed``)."""
    return _batch(np.asarray(x), arg).astype(np.float32, copy=False)


def _batch(x, arg: str):
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{arg}: images of dtype {x.dtype}; the analyses take float images normalised as in "
                         f"training (train.data.preprocess_eval)")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] < 1:
        raise ValueError(f"{arg} must be one image (H, W, C) or a batch (B, H, W, C), got shape {tuple(x.shape)}")
    xp = np if isinstance(x, np.ndarray) else jnp
    bad = int(x.size - xp.isfinite(x).sum())
    if bad:
        raise ValueError(f"{arg}: {bad} NaN or infinite pixel value{'s' if bad > 1 else ''}; the analyses take finite "
                         f"float images normalised as in training (train.data.preprocess_eval)")
    return x


def check_class(value, num_classes: int, arg: str = "class_index") -> int:
    """One class index: an integer in ``[0, num_classes)``."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= value < num_classes:
        raise ValueError(f"{arg}={value!r}: must be an integer in [0, {num_classes})")
    return int(value)


def class_indices(value, batch: int, num_classes: int) -> jax.Array:
    """int32 ``(B,)`` of ``class_index``: None (-1 for each image: its predicted class), one index for
    every image, or one per image."""
    if value is None:
        return jnp.full((batch,), -1, jnp.int32)
    values = np.asarray(value)
    if values.ndim == 0:
        return jnp.full((batch,), check_class(value.item() if isinstance(value, np.ndarray) else value,
                                              num_classes), jnp.int32)
    if values.shape != (batch,):
        raise ValueError(f"class_index: one index or {batch} of them (one per image), got shape {values.shape}")
    # a list's own items: np.asarray([True, 1]) would turn the bool into the index 1
    items = list(value) if isinstance(value, (list, tuple)) else values.tolist()
    return jnp.asarray([check_class(v, num_classes) for v in items], jnp.int32)


def leaf_at(tree, path: str):
    """The leaf at ``path`` ('params/conv1/kernel') of a nested dict, or None."""
    for part in path.split("/"):
        tree = tree.get(part) if hasattr(tree, "get") else None
    return tree


def check_variables(model, variables, input_shape) -> None:
    """``variables`` must hold every array ``model`` has at ``input_shape`` ``(H, W, C)``, with its shape:
    one ValueError line naming the first that is missing or of another shape (another model's variables)."""
    for path, leaf in flatten_dict(abstract_variables(model, input_shape), sep="/").items():
        here = leaf_at(variables, path)
        if here is None or hasattr(here, "get") or np.shape(here) != leaf.shape:
            found = "none" if here is None else "a dict" if hasattr(here, "get") else np.shape(here)
            raise ValueError(f"variables: {type(model).__name__} keeps a {leaf.shape} array at {path}; these "
                             f"variables have {found} there (another model's variables?)")
