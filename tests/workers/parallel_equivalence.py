"""The same 3 steps on the same global batches with 1, 2, 4, 8 devices through shard_map, and with 8
through pmap; each final state saved to OUT/<parallelism>_<k>.npz.

usage: parallel_equivalence.py OUT  (with XLA_FLAGS=--xla_force_host_platform_device_count=8)
"""
import json
import sys

import jax
import numpy as np

from common import train_three_steps
from train import parallel

out = sys.argv[1]
assert jax.device_count() == 8, jax.devices()
losses = {}
for parallelism, k in [("shard_map", 1), ("shard_map", 2), ("shard_map", 4), ("shard_map", 8), ("pmap", 8)]:
    flat, losses[f"{parallelism}_{k}"] = train_three_steps(parallel.make_plan(parallelism, k))
    np.savez(f"{out}/{parallelism}_{k}.npz", **flat)
print(json.dumps(losses))
