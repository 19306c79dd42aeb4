"""Shared set-up for the benchmarks: a model, its train state and random batch on the devices, and
the project's REAL compiled train / eval steps (``train.step`` through ``train.parallel``), built
exactly as ``train.loop.fit`` builds them. Used by ``bench.py`` (worker processes) and
``profile_step.py``.

Import this module only after ``XLA_FLAGS`` is set: it imports jax.
"""
from __future__ import annotations

import dataclasses
import functools
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import zoo  # noqa: E402
from configs import default  # noqa: E402
from train import optim, parallel, step  # noqa: E402


class Skip(Exception):
    """The model cannot run at the requested input size (the reason is the message)."""


def input_shape_for(name: str, res: int) -> tuple[tuple[int, int, int], str]:
    """``(H, W, C)`` the model runs at for the requested resolution, and a note.

    Models with a fixed input size (``lenet5``: 28x28x1) run at that size whatever ``res`` is;
    models whose smallest accepted size exceeds ``res`` (``alexnet``: 63) raise :class:`Skip`."""
    spec = zoo.create(name).input_spec()
    if spec.exact_size:
        note = "" if spec.exact_size == res else f"fixed input {spec.exact_size}x{spec.exact_size}"
        return (spec.exact_size, spec.exact_size, spec.channels), note
    if res < spec.min_size:
        raise Skip(f"needs input >= {spec.min_size} px")
    return (res, res, spec.channels), ""


def bench_config(name: str, precision: str, parallelism: str):
    """The default config, with PyTorch-script-like optimisation: SGD momentum 0.9, constant lr 0.01,
    no weight decay (the reference script's ``torch.optim.SGD(lr=0.01, momentum=0.9)``)."""
    c = default.get_config()
    c.model = name
    c.precision = precision
    c.parallelism = parallelism
    c.optimizer.name = "sgd"
    c.optimizer.momentum = 0.9
    c.optimizer.learning_rate = 0.01
    c.optimizer.weight_decay = 0.0
    c.schedule.name = "constant"
    return c


@dataclasses.dataclass
class Setup:
    name: str
    model: object
    info: object
    plan: parallel.Plan
    input_shape: tuple
    note: str
    batch_size: int
    tx: object
    cfg: step.StepConfig
    state: object          # replicated device state
    batch: dict            # device batch
    train_fn: object       # parallel.compile_step(train_step)
    eval_fn: object        # parallel.compile_step(eval_step)
    init_s: float          # create_state + replicate, seconds
    params: int


def setup(name: str, *, batch: int, res: int, classes: int, precision: str = "float32",
          parallelism: str = "shard_map", seed: int = 0) -> Setup:
    """Model + optimizer + state + random batch + compiled-step callables (not yet compiled)."""
    input_shape, note = input_shape_for(name, res)
    c = bench_config(name, precision, parallelism)
    plan = parallel.make_plan(c.parallelism, c.num_devices)
    parallel.check_batch(batch, plan)
    info = zoo.model_info(name)
    # train.loop.build_model: zoo.create(name, axis_name=AXIS, dtype=PRECISIONS[precision], conv_impl=..., num_classes=...)
    model = zoo.create(name, axis_name=parallel.AXIS, dtype=step.PRECISIONS[precision], num_classes=classes,
                       conv_impl=zoo.convs.conv_impl_for(plan.devices[0].platform))
    tx, _ = optim.make_optimizer(c, steps_per_epoch=100, total_steps=10_000, head=info.head)
    t0 = time.perf_counter()
    state = step.create_state(model, tx, rng=jax.random.PRNGKey(seed), input_shape=input_shape,
                              float16=precision == "float16")
    state = jax.tree.map(np.asarray, state)
    params = zoo.param_count(state.params)
    dev_state = parallel.replicate(state, plan)
    jax.block_until_ready(dev_state)
    init_s = time.perf_counter() - t0
    del state
    # train.loop.step_config with transfer.freeze='none': every statistic trainable -> the same program.
    cfg = step.StepConfig(loss=c.loss, label_smoothing=c.label_smoothing, ema_decay=c.optimizer.ema_decay)
    rng = np.random.default_rng(seed)
    host = {"image": rng.standard_normal((batch, *input_shape), dtype=np.float32),
            "label": rng.integers(0, classes, (batch,)).astype(np.int32),
            "mask": np.ones((batch,), np.float32)}
    dev_batch = parallel.put_batch(host, plan)
    train_fn = parallel.compile_step(functools.partial(step.train_step, model=model, tx=tx, cfg=cfg), plan)
    # train.loop.compile_eval
    eval_fn = parallel.compile_step(functools.partial(step.eval_step, model=model, cfg=cfg, use_ema=False), plan,
                                    out_sharded=(False, True), donate_state=False)
    return Setup(name, model, info, plan, input_shape, note, batch, tx, cfg, dev_state, dev_batch, train_fn, eval_fn,
                 init_s, params)
