"""XLA compile options, in one place, and ``init``: a model's variables from one compiled call."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def fast_compile_options() -> dict:
    """XLA options for programs that run once (initialisation): no LLVM optimisation on CPU, which
    compiles 3-4x faster (the per-parameter threefry code is what XLA:CPU is slow to optimise).
    Values can differ from an optimised build in the last bits (float fusion)."""
    return {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else {}


def compile_once(fn, *args):
    """``jax.jit(fn)`` lowered and compiled with :func:`fast_compile_options` for ``args``."""
    return jax.jit(fn).lower(*args).compile(compiler_options=fast_compile_options())


def init(model, input_shape, *, rng: int | jax.Array = 0, batch: int = 1) -> dict:
    """``model.init`` for one input shape ``(H, W, C)``, compiled once as a whole (fast on CPU, where
    an eager ``model.init`` compiles every op separately). Returns ``{'params', ['batch_stats']}``."""
    key = jax.random.PRNGKey(rng) if isinstance(rng, int) else rng
    x = jnp.zeros((batch, *input_shape), jnp.float32)
    return compile_once(lambda k: model.init(k, x, train=False), key)(key)
