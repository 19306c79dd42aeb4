"""The image argument every analysis takes: one image ``(H, W, C)`` or a batch ``(B, H, W, C)``."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def as_batch(x) -> jax.Array:
    """``(H, W, C)`` or ``(B, H, W, C)`` -> float32 ``(B, H, W, C)``; ValueError for any other rank."""
    x = jnp.asarray(x, jnp.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"x must be one image (H, W, C) or a batch (B, H, W, C), got shape {tuple(x.shape)}")
    return x
