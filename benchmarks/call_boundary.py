"""Identical blocks as non-inlined calls: does XLA:CPU compile a repeated block once?

A compile-time lever the issue names ("unrolled repeated blocks"): each block is a `jax.jit` function
called with the frontend attribute `inlineable="false"` (`set_xla_metadata`), which XLA's CallInliner
respects, against the same blocks traced inline. Prints lowering and XLA compile time, the step
time, and the compiled HLO's calls and fusions (benchmarks/README.md, "Round 17").

    python benchmarks/call_boundary.py --blocks 4 16
"""
import argparse
import time

import jax
import jax.numpy as jnp
from jax.experimental.xla_metadata import set_xla_metadata


def batch_norm(y, scale, bias):
    """Training-mode BatchNorm over (B, H, W) without jnp.var (which is a nested jit of its own)."""
    n = y.shape[0] * y.shape[1] * y.shape[2]
    mean = jnp.sum(y, (0, 1, 2)) / n
    var = jnp.sum(jnp.square(y - mean), (0, 1, 2)) / n
    return (y - mean) * jax.lax.rsqrt(var + 1e-5) * scale + bias


def basic_block(x, p):
    """ResNet's basic block, x: (B, H, W, C) -> (B, H, W, C)."""
    w1, w2, s1, b1, s2, b2 = p
    conv = lambda v, w: jax.lax.conv_general_dilated(
        v, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    y = jnp.maximum(batch_norm(conv(x, w1), s1, b1), 0)
    return jnp.maximum(x + batch_norm(conv(y, w2), s2, b2), 0)


def measure(mode, blocks, batch=16, size=32, channels=64, steps=5):
    jitted = jax.jit(basic_block)

    def loss(x, params):
        for p in params:
            if mode == 'call':
                with set_xla_metadata(inlineable='false'):
                    x = jitted(x, p)
            else:
                x = basic_block(x, p)
        return jnp.sum(jnp.square(x))

    c = channels
    x = jnp.ones((batch, size, size, c))
    params = [(jnp.full((3, 3, c, c), 0.01), jnp.full((3, 3, c, c), 0.01),
               jnp.ones(c), jnp.zeros(c), jnp.ones(c), jnp.zeros(c)) for _ in range(blocks)]
    step = jax.jit(jax.value_and_grad(loss, argnums=1))
    t = time.perf_counter()
    lowered = step.lower(x, params)
    lower_s = time.perf_counter() - t
    t = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t
    hlo = compiled.as_text()
    jax.block_until_ready(compiled(x, params))
    t = time.perf_counter()
    for _ in range(steps):
        out = jax.block_until_ready(compiled(x, params))
    step_ms = (time.perf_counter() - t) / steps * 1e3
    print(f'{mode:7s} blocks {blocks:3d}  lower {lower_s:5.2f} s  XLA compile {compile_s:5.2f} s  '
          f'step {step_ms:8.1f} ms  calls {hlo.count(" call(")}  fusions {hlo.count("fusion(")}  '
          f'loss {float(out[0]):.6g}')


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--blocks', type=int, nargs='+', default=[4, 16])
    args = parser.parse_args()
    for n in args.blocks:
        for mode in ('inline', 'call'):
            measure(mode, n)
