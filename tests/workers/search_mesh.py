"""A search group of two trials (LeNet-5 with BatchNorm, different learning rates, weight decays and
label smoothing) on 4 simulated devices: on a 2-D mesh (2 trial rows x 2 data devices, shard_map) and
vmapped inside pmap over 2 devices; each compared with its config alone on one device.

usage: search_mesh.py  (with XLA_FLAGS=--xla_force_host_platform_device_count=4); prints one JSON line:
{"<plan>": [max relative difference of trial 0, of trial 1], "trial_sharding": "..."}
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from helpers import quick  # noqa: E402
from search_helpers import random_batches, search_members, trained_alone, trained_side_by_side  # noqa: E402
from train import parallel  # noqa: E402

assert jax.device_count() == 4, jax.devices()
SHAPE = (28, 28, 1)
base = quick(**{"batch_size": 16, "num_epochs": 3.0, "model_kwargs.norm": "batch", "optimizer.name": "sgd"})
members = search_members(base, [{"optimizer.learning_rate": lr, "optimizer.weight_decay": wd, "label_smoothing": ls}
                                for lr, wd, ls in [(0.1, 1e-3, 0.0), (0.03, 5e-4, 0.1)]])
batches = random_batches(SHAPE, 3)
alone = [trained_alone(m.config, SHAPE, batches) for m in members]


def rel(a, b):
    return max(float(np.max(np.abs(x - y)) / (np.max(np.abs(y)) + 1e-12)) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b)))


out = {}
for name, plan in [("mesh_2x2", parallel.make_plan("shard_map", 4, trial_devices=2)),
                   ("pmap_2", parallel.make_plan("pmap", 2))]:
    g, states, _ = trained_side_by_side(members, SHAPE, batches, None, plan)
    out[name] = [rel(jax.tree.map(lambda x: x[i], (states.params, states.batch_stats)),
                     (alone[i].params, alone[i].batch_stats)) for i in range(2)]
    if name == "mesh_2x2":
        placed = parallel.put_trials(g.initial_state(), plan)
        out["trial_sharding"] = str(jax.tree.leaves(placed.params)[0].sharding.spec)
print(json.dumps(out))
