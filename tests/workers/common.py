"""Shared setup of the parallel workers: one small BatchNorm model, three fixed global batches."""
import functools

import jax
import numpy as np
import optax
from flax import traverse_util

import zoo
from train import parallel, step

GLOBAL_BATCH = 16


def batches():
    rng = np.random.default_rng(0)
    return [{"image": rng.standard_normal((GLOBAL_BATCH, 8, 8, 3)).astype(np.float32),
             "label": rng.integers(0, 10, GLOBAL_BATCH).astype(np.int32),
             "mask": np.ones(GLOBAL_BATCH, np.float32)} for _ in range(3)]


def train_three_steps(plan, local_slice=slice(None)):
    """3 SGD steps of a depth-8 CIFAR ResNet (BatchNorm in every block); returns flat host state."""
    model = zoo.resnet.CifarResNet(depth=8, axis_name=parallel.AXIS)
    tx = optax.sgd(0.1, momentum=0.9)
    state = step.create_state(model, tx, rng=jax.random.PRNGKey(0), input_shape=(8, 8, 3))
    train = parallel.compile_step(functools.partial(step.train_step, model=model, tx=tx, cfg=step.StepConfig()), plan)
    state = parallel.replicate(state, plan)
    for b in batches():
        state, metrics = train(state, parallel.put_batch({k: v[local_slice] for k, v in b.items()}, plan))
    host = parallel.unreplicate(state, plan)
    flat = traverse_util.flatten_dict({"params": host.params, "batch_stats": host.batch_stats}, sep="/")
    return flat, float(parallel.unreplicate(metrics, plan)["loss"])
