"""Dropout as the zoo's models apply it (``zoo.layers.Ops.dropout``): ``flax.linen.Dropout`` in train
mode, nothing at rate 0 or in eval mode, and :class:`Dropout` when the rate is an array.

An array rate is what a hyper-parameter search group traces (``train.search``: the trials of a group
differ in ``model_kwargs.dropout`` under ``jax.vmap``), where ``nn.Dropout``'s Python tests of the
rate cannot run. :class:`Dropout` is named like ``nn.Dropout`` (``Dropout_<i>``) and draws its mask
the same way from the same key, so a trial sees the masks of its config trained alone.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def dropout(x: jax.Array, rate, *, deterministic: bool) -> jax.Array:
    """``x`` with dropout at ``rate`` (a float, or an array: :class:`Dropout`); needs
    ``rngs={'dropout': key}`` unless ``deterministic``. Call inside a module (it creates one)."""
    if isinstance(rate, jax.Array):
        return Dropout(rate, deterministic=deterministic)(x)
    if rate <= 0.0:
        return x
    return nn.Dropout(rate, deterministic=deterministic)(x)


class Dropout(nn.Module):
    """``nn.Dropout`` with an array rate: mask ``bernoulli(key, 1 - rate)``, kept values times ``1 / (1 - rate)``."""

    rate: Any
    deterministic: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.deterministic:
            return x
        keep = 1.0 - self.rate
        mask = jax.random.bernoulli(self.make_rng("dropout"), p=keep, shape=x.shape)
        return jax.lax.select(mask, x / keep, jnp.zeros_like(x))
