"""Shared set-up for the benchmarks: a model, its train state and random batch on the devices, and
the project's REAL compiled train / eval steps, built by the training setup itself
(``train.setup.make``: the same model, optimizer, step config and compiled steps as ``train.fit``,
without the data pipelines). Used by ``bench.py`` (worker processes) and ``profile_step.py``.

Import this module only after ``XLA_FLAGS`` is set: it imports jax.
"""
from __future__ import annotations

import dataclasses
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
from train import evaluation, parallel, step  # noqa: E402
from train import setup as train_setup  # noqa: E402


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
    train_fn: object       # train.setup.Run.compile_train(): (state, batch) -> (state, metrics)
    eval_fn: object        # train.evaluation.compile_eval: (variables, batch) -> (sums, per-example)
    init_s: float          # create_state + replicate, seconds
    params: int

    @staticmethod
    def variables(state) -> dict:
        """What ``eval_fn`` takes: the state's eval variables (``train.step.eval_variables``)."""
        return step.eval_variables(state)


def setup(name: str, *, batch: int, res: int, classes: int, precision: str = "float32",
          parallelism: str = "shard_map", seed: int = 0, model_kwargs: dict | None = None) -> Setup:
    """Model + optimizer + state + random batch + compiled-step callables (not yet compiled)."""
    input_shape, note = input_shape_for(name, res)
    c = bench_config(name, precision, parallelism)
    c.seed = seed
    c.model_kwargs.update(model_kwargs or {})
    plan = parallel.make_plan(c.parallelism, c.num_devices)
    parallel.check_batch(batch, plan)
    run = train_setup.make(c, plan=plan, model_kwargs=train_setup.model_kwargs(c, classes), input_shape=input_shape,
                           steps_per_epoch=100, total_steps=10_000)
    t0 = time.perf_counter()
    state = run.fresh_state()
    params = zoo.param_count(state.params)
    dev_state = parallel.replicate(state, plan)
    jax.block_until_ready(dev_state)
    init_s = time.perf_counter() - t0
    del state
    rng = np.random.default_rng(seed)
    host = {"image": rng.standard_normal((batch, *input_shape), dtype=np.float32),
            "label": rng.integers(0, classes, (batch,)).astype(np.int32),
            "mask": np.ones((batch,), np.float32)}
    dev_batch = parallel.put_batch(host, plan)
    eval_fn = evaluation.compile_eval(run.model, run.step_config, plan)
    return Setup(name, run.model, run.info, plan, input_shape, note, batch, run.tx, run.step_config, dev_state,
                 dev_batch, run.compile_train(), eval_fn, init_s, params)



def executed_macs(model, input_shape, *, train: bool) -> int:
    """MACs per image of what the step actually multiplies, in train or eval mode, at this input size.

    ``zoo.macs`` is the published (literal) count, taken from ``model.init``: it counts
    ``zoo.heads.PooledDense`` (VGG's and AlexNet's ``AdaptiveAvgPool2d -> flatten -> Linear``) at its
    parameter's size, ``C*oh*ow x F`` (VGG: 25088 x 4096), and auxiliary classifiers (they run at init).
    When the last map is smaller than the pool's output (VGG at 32x32: a 1x1 map) that layer folds the
    pool into the kernel and runs a ``C*H*W x F`` dot instead (512 x 4096): VGG-11 at 32x32 executes
    171.7 M MACs per image of the counted 272.3 M. Here the same per-layer rule as ``zoo.summary``
    (conv: output positions x kernel size; dense: kernel size per output row; a custom layer's own
    ``macs(out_shape)``) is applied to the layers that ``model.apply`` calls in the given mode, a folding
    PooledDense at its folded size: AlexNet in train mode with dropout runs the literal pool -> dropout ->
    Linear; in eval mode GoogLeNet's / Inception v3's auxiliary classifiers do not run. The small-map
    im2col rewrite of ``zoo.layers`` (taps that read only padding are skipped) is not subtracted: a conv
    counts as the literal conv."""
    import flax.linen as nn  # noqa: PLC0415
    from zoo.heads import PooledDense  # noqa: PLC0415
    from zoo.summary import abstract_variables, layer_macs  # noqa: PLC0415

    total = [0]

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        mod = context.module
        if context.method_name != "__call__" or getattr(mod, "placeholder_input", False) is True:
            return out
        if isinstance(mod, PooledDense):
            (oh, ow), (h, w), c = mod.size, args[0].shape[1:3], args[0].shape[-1]
            total[0] += c * min(h * w, oh * ow) * mod.features
        elif hasattr(out, "shape"):
            total[0] += layer_macs(mod, out)
        return out

    if getattr(model, "axis_name", None) is not None:   # cross-device batch norm: nothing to count, no axis here
        model = model.clone(axis_name=None)
    variables = abstract_variables(model, input_shape)
    x = jax.ShapeDtypeStruct((2, *input_shape), jax.numpy.float32)   # 2: train-mode batch norm needs > 1 value
    with nn.intercept_methods(interceptor):
        if train:
            jax.eval_shape(lambda v, x, k: model.apply(v, x, train=True, mutable=True, rngs={"dropout": k}),
                           variables, x, jax.random.key(0))
        else:
            jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    return total[0]
