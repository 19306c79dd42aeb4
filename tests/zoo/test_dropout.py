"""zoo.dropout: an array rate (traced, vmapped over a search group's trials) draws the masks that
``flax.linen.Dropout`` draws at the same rate from the same key, in the same module names."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.dropout import dropout


class Two(nn.Module):
    rate: Any
    train: bool = True

    @nn.compact
    def __call__(self, x):
        return dropout(dropout(x, self.rate, deterministic=not self.train), self.rate, deterministic=not self.train)


X = jnp.arange(1.0, 401.0).reshape(4, 100)
KEY = jax.random.key(3)


def _apply(rate, train=True):
    return Two(rate, train).apply({}, X, rngs={"dropout": KEY})


def test_array_rates_draw_the_masks_of_nn_dropout():
    rates = jnp.asarray([0.3, 0.6], jnp.float32)
    got = jax.jit(jax.vmap(_apply))(rates)
    for i, rate in enumerate([0.3, 0.6]):
        want = _apply(rate)  # a float rate: flax's own nn.Dropout, twice (Dropout_0, Dropout_1)
        np.testing.assert_allclose(got[i], want, rtol=1e-6)
        kept = np.asarray(want) != 0
        assert abs(kept.mean() - (1 - rate) ** 2) < 0.1   # two masks: (1 - rate)^2 of the values kept
        np.testing.assert_allclose(np.asarray(want)[kept], np.asarray(X)[kept] / (1 - rate) ** 2, rtol=1e-5)


def test_eval_mode_and_rate_zero_leave_the_input():
    np.testing.assert_array_equal(jax.jit(lambda r: _apply(r, train=False))(jnp.float32(0.5)), X)
    np.testing.assert_array_equal(_apply(0.0), X)
