"""The ONE train step and eval step every architecture uses, written per device.

Each function sees its device's slice of the global batch and combines across devices with named-axis
collectives over ``AXIS``; ``train.parallel.compile_step`` runs it through ``jax.pmap`` or
``jax.jit(jax.shard_map)``. The model must be built with ``axis_name=AXIS`` so that BatchNorm
averages batch statistics over all devices every step (synchronised BN): the result is then the
same on 1 or N devices for the same global batch.

Models with auxiliary classifiers (GoogLeNet, Inception v3; ``zoo.auxiliary``) sow their logits in
train mode; the loss adds their cross-entropy with ``StepConfig.aux_loss_weight`` each. A model
without them sows nothing, and the step is the same program as without the term.

Loss and metrics are weighted by real examples: ``batch['mask']`` is 1 for real, 0 for padded ones.
The gradient is that of the global mean loss: each device differentiates ``sum(local losses) / N``
(N = real examples in the global batch) and ``lax.psum`` adds the devices' parts, i.e. the
``lax.pmean`` of device-mean gradients weighted by each device's real examples. On one device the sum
is skipped (:func:`psum`): XLA:CPU would copy every gradient through a one-participant all-reduce.

A step whose loss or gradients are not finite leaves the state untouched. On CPU the optimizer update
runs inside ``lax.cond`` on that one flag (``lax.platform_dependent``); elsewhere each new value is
selected element by element against the old one (``jnp.where``), which fuses into the update's
kernels on a GPU, where a conditional would wait for the flag on the host. Both give the same state.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from train import optim
from zoo.auxiliary import AUX_COLLECTION
from zoo.compiling import compile_once
from train.parallel import AXIS

LOSSES = ("cross_entropy", "mse")
PRECISIONS = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@flax.struct.dataclass
class LossScale:
    """Dynamic loss scaling for float16: halve on overflow (the update is skipped), double after
    ``period`` finite steps in a row."""

    scale: jax.Array
    good_steps: jax.Array
    period: int = flax.struct.field(pytree_node=False, default=2000)

    @classmethod
    def create(cls, initial: float = 2.0 ** 15, period: int = 2000) -> "LossScale":
        return cls(jnp.asarray(initial, jnp.float32), jnp.asarray(0, jnp.int32), period)

    def adjust(self, finite: jax.Array) -> "LossScale":
        grow = self.good_steps + 1 >= self.period
        scale = jnp.where(finite, jnp.where(grow, self.scale * 2.0, self.scale), jnp.maximum(self.scale / 2.0, 1.0))
        good = jnp.where(finite & ~grow, self.good_steps + 1, 0)
        return self.replace(scale=scale, good_steps=good)


@flax.struct.dataclass
class TrainState:
    step: jax.Array          # int32 scalar: train steps taken (micro-steps under accumulation)
    params: Any
    batch_stats: Any         # {} for models without BatchNorm
    opt_state: Any
    rng: jax.Array           # uint32 (2,) raw PRNG key: dropout keys are folded from it
    ema_params: Any = None   # parameter EMA when optimizer.ema_decay > 0
    ema_batch_stats: Any = None  # and the BatchNorm statistics' EMA beside it ({} without BatchNorm)
    loss_scale: LossScale | None = None  # float16 only


def _init_fn(model: nn.Module, tx: optax.GradientTransformation, input_shape, ema: bool, float16: bool):
    def init(rng):
        init_rng, state_rng = jax.random.split(rng)
        variables = model.init(init_rng, jnp.zeros((1, *input_shape), jnp.float32), train=False)
        params = variables["params"]
        return TrainState(step=jnp.asarray(0, jnp.int32), params=params, batch_stats=variables.get("batch_stats", {}),
                          opt_state=tx.init(params), rng=state_rng,
                          ema_params=jax.tree.map(jnp.copy, params) if ema else None,
                          ema_batch_stats=jax.tree.map(jnp.copy, variables.get("batch_stats", {})) if ema else None,
                          loss_scale=LossScale.create() if float16 else None)
    return init


def create_state(model: nn.Module, tx: optax.GradientTransformation, *, rng: jax.Array, input_shape,
                 ema: bool = False, float16: bool = False) -> TrainState:
    """Initialise variables and optimizer state in one compiled call on the default device
    (``train.parallel.replicate`` it afterwards). ``rng``: a raw uint32 PRNG key.

    Init runs once: it is compiled with :func:`zoo.compiling.fast_compile_options` (on CPU little
    or no LLVM optimisation, by the size of the model's variables)."""
    return compile_once(_init_fn(model, tx, input_shape, ema, float16), rng,
                        drawn=lambda state: (state.params, state.batch_stats))(rng)


def abstract_state(model: nn.Module, tx: optax.GradientTransformation, *, input_shape, ema: bool = False,
                   float16: bool = False) -> TrainState:
    """The state's structure, shapes and dtypes (``jax.ShapeDtypeStruct`` leaves), without computing it."""
    return jax.eval_shape(_init_fn(model, tx, input_shape, ema, float16), jax.random.PRNGKey(0))


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """What the step does besides the model and optimizer. The numbers may be traced arrays (the
    per-trial values of a search group, ``train.search``)."""

    loss: str = "cross_entropy"
    label_smoothing: float = 0.0
    ema_decay: float = 0.0
    ema_warmup: bool = False       # the EMA's decay min(ema_decay, (1 + t) / (10 + t)) after t updates (TF)
    # pytree of bools over batch_stats: False where statistics stay frozen (transfer learning)
    stats_trainable: Any = None
    aux_loss_weight: float = 0.3   # each auxiliary classifier's loss (GoogLeNet paper: 0.3); configs/default.py

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r}: allowed values are {LOSSES}")
        if not isinstance(self.label_smoothing, jax.Array) and not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={self.label_smoothing!r}: must be in [0, 1)")
        if self.loss == "mse" and not isinstance(self.label_smoothing, jax.Array) and self.label_smoothing:
            raise ValueError(f"label_smoothing={self.label_smoothing!r}: smooths loss='cross_entropy' only "
                             "(loss='mse' compares with the one-hot labels); set it to 0")
        if not self.aux_loss_weight >= 0.0:
            raise ValueError(f"aux_loss_weight={self.aux_loss_weight!r}: must be a number >= 0")


def per_example_loss(logits: jax.Array, labels: jax.Array, cfg: StepConfig) -> jax.Array:
    """logits: (B, K) float32, labels: (B,) int -> (B,).
    cross_entropy: softmax cross-entropy against one-hot labels smoothed by ``label_smoothing``.
    mse: mean over classes of (softmax(logits) - one_hot)^2, the squared-error alternative of the notes."""
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
    if cfg.loss == "mse":
        return jnp.mean((jax.nn.softmax(logits) - onehot) ** 2, axis=-1)
    if isinstance(cfg.label_smoothing, jax.Array) or cfg.label_smoothing:  # an array: per trial (train.search)
        onehot = optax.smooth_labels(onehot, cfg.label_smoothing)
    return optax.softmax_cross_entropy(logits, onehot)


def aux_loss_sum(aux: dict, labels: jax.Array, mask: jax.Array, cfg: StepConfig) -> jax.Array:
    """``aux_loss_weight * sum over auxiliary classifiers of sum_i mask_i * loss(aux logits_i, label_i)``;
    ``aux``: the sown ``{name: (B, K) logits}`` (``zoo.auxiliary``)."""
    losses = [jnp.sum(per_example_loss(a.astype(jnp.float32), labels, cfg) * mask) for a in jax.tree.leaves(aux)]
    return cfg.aux_loss_weight * sum(losses)


def _correct(logits, labels, k):
    k = min(k, logits.shape[-1])
    topk = lax.top_k(logits, k)[1]
    return jnp.any(topk == labels[:, None], axis=-1).astype(jnp.float32)


def _learning_rate(opt_state) -> jax.Array:
    """The rate of the last update, from a ``train.optim.make_optimizer`` state (NaN for other optimizers)."""
    try:
        return jnp.asarray(optim.current_lr(opt_state), jnp.float32)
    except (AttributeError, KeyError, TypeError):
        return jnp.asarray(jnp.nan, jnp.float32)


def psum(x):
    """``lax.psum`` over the data axis; the identity when that axis has one device (the same value:
    a one-device all-reduce only copies, which costs a pass over every gradient on XLA:CPU)."""
    return x if lax.axis_size(AXIS) == 1 else lax.psum(x, AXIS)


def all_finite(tree):
    """Whether every floating-point leaf of ``tree`` is finite (no NaN, no Inf): a traced bool inside
    a compiled step, a numpy bool for host arrays (a checkpoint's state)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    xp = jnp if any(isinstance(x, jax.Array) for x in leaves) else np
    return xp.all(xp.asarray([xp.all(xp.isfinite(x)) for x in leaves], dtype=bool))


# Gradient leaves of at most this many elements are concatenated before a reduction over all of them.
SMALL_LEAF = 1 << 18


def reduction_parts(tree) -> list[jax.Array]:
    """The leaves of ``tree`` for a reduction over all their elements: those of at most ``SMALL_LEAF``
    elements raveled and concatenated into one vector, the larger ones as they are. XLA:CPU compiles
    every distinct reduction into about three kernels (split, square, reduce), and a step's cold
    compile time grows with its distinct kernels: one reduction over the small leaves instead of one
    per leaf took 9-36% off its XLA compile (benchmarks/README Round 7). Only the small leaves are copied."""
    leaves = jax.tree.leaves(tree)
    small = [x.ravel() for x in leaves if x.size <= SMALL_LEAF]
    return ([jnp.concatenate(small)] if small else []) + [x for x in leaves if x.size > SMALL_LEAF]


def sum_of_squares(tree) -> jax.Array:
    """The sum of every element's square (``optax.global_norm(tree) ** 2``), over :func:`reduction_parts`."""
    return sum(jnp.sum(jnp.square(x)) for x in reduction_parts(tree))


def grads_finite(grads, sq_norm: jax.Array) -> jax.Array:
    """``all_finite(grads)`` inside a step, given their squared global norm ``sq_norm``. On CPU: when
    ``sq_norm`` is finite so is every element, and the elementwise pass (the costlier one on XLA:CPU)
    runs in a ``lax.cond`` only when it is not (a NaN or Inf, or squares overflowing float32)."""
    check = lambda n: all_finite(reduction_parts(grads))  # noqa: E731
    return lax.platform_dependent(
        sq_norm, cpu=lambda n: lax.cond(jnp.isfinite(n), lambda: jnp.asarray(True), lambda: check(n)), default=check)


def train_step(state: TrainState, batch: dict, *, model: nn.Module, tx: optax.GradientTransformation,
               cfg: StepConfig) -> tuple[TrainState, dict]:
    """One optimisation step on this device's slice; returns the new state and global metrics."""
    mask = batch["mask"].astype(jnp.float32)
    n_global = jnp.maximum(psum(mask.sum()), 1.0)
    dropout_rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), lax.axis_index(AXIS))
    scale = state.loss_scale.scale if state.loss_scale is not None else 1.0

    def loss_fn(params):
        logits, new_vars = model.apply({"params": params, "batch_stats": state.batch_stats}, batch["image"],
                                       train=True, mutable=["batch_stats", AUX_COLLECTION], rngs={"dropout": dropout_rng})
        logits = logits.astype(jnp.float32)
        loss_sum = jnp.sum(per_example_loss(logits, batch["label"], cfg) * mask)
        aux = new_vars.get(AUX_COLLECTION)
        aux_sum = aux_loss_sum(aux, batch["label"], mask, cfg) if aux else None
        if aux_sum is not None:
            loss_sum = loss_sum + aux_sum
        return loss_sum / n_global * scale, (logits, new_vars.get("batch_stats", {}), aux_sum)

    grads, (logits, new_stats, aux_sum) = jax.grad(loss_fn, has_aux=True)(state.params)
    grads = jax.tree.map(lambda g: g / scale, psum(grads))

    loss = psum(jnp.sum(per_example_loss(logits, batch["label"], cfg) * mask)) / n_global
    grad_sq = sum_of_squares(grads)
    finite = jnp.isfinite(loss) & grads_finite(grads, grad_sq)

    if cfg.stats_trainable is not None:
        new_stats = jax.tree.map(lambda t, new, old: new if t else old, cfg.stats_trainable, new_stats,
                                 state.batch_stats)

    def update(_):
        updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        new_ema = state.ema_params, state.ema_batch_stats
        if state.ema_params is not None:  # once per optimizer update (not per accumulated micro-batch)
            decay = optim.ema_decay_at(cfg.ema_decay, optim.updates_done(new_opt_state, state.step + 1),
                                       warmup=cfg.ema_warmup)
            new_ema = optim.ema_update(new_ema, (new_params, new_stats), decay,
                                       active=optim.is_update_step(new_opt_state))
        return new_params, new_stats, new_opt_state, new_ema

    def keep(_):  # a non-finite step leaves the state untouched (never a NaN in the state or a checkpoint)
        return state.params, state.batch_stats, state.opt_state, (state.ema_params, state.ema_batch_stats)

    def select(finite):  # elementwise: fuses into the update's kernels (GPU)
        return jax.tree.map(lambda a, b: jnp.where(finite, a, b), update(None), keep(None))

    # XLA:CPU runs the select as extra passes over every parameter and slot: the conditional skips them
    new_params, new_stats, new_opt_state, (new_ema, new_ema_stats) = lax.platform_dependent(
        finite, cpu=lambda finite: lax.cond(finite, update, keep, None), default=select)
    new_state = state.replace(
        step=state.step + 1, params=new_params, batch_stats=new_stats, opt_state=new_opt_state, ema_params=new_ema,
        ema_batch_stats=new_ema_stats,
        loss_scale=None if state.loss_scale is None else state.loss_scale.adjust(finite))

    metrics = {
        "loss": loss,
        "top1": psum(jnp.sum(_correct(logits, batch["label"], 1) * mask)) / n_global,
        "top5": psum(jnp.sum(_correct(logits, batch["label"], 5) * mask)) / n_global,
        "grad_norm": jnp.sqrt(grad_sq),
        "learning_rate": _learning_rate(new_opt_state),
        "finite": finite,
        "examples": n_global,
    }
    if aux_sum is not None:  # the weighted auxiliary term ("loss" stays the main classifier's, as in eval)
        metrics["aux_loss"] = psum(aux_sum) / n_global
    if state.loss_scale is not None:
        metrics["loss_scale"] = state.loss_scale.scale
        # the scaled gradients overflowed float16 (the loss is finite, the scale can still halve): the
        # routine calibration of dynamic loss scaling, skipped as any non-finite step, not a divergence
        metrics["overflow"] = ~finite & jnp.isfinite(loss) & (state.loss_scale.scale > 1.0)
    return new_state, metrics


def eval_variables(state, use_ema: bool = True) -> dict:
    """The variables a state is evaluated with: ``{'params', 'batch_stats'}`` (``batch_stats`` only when
    the model has any); the EMA in place of both when the run kept one and ``use_ema`` (a checkpoint
    from before the statistics' EMA: its parameter EMA with the live statistics).
    ``state``: a :class:`TrainState` or the nested dict a checkpoint's state restores to."""
    get = state.get if isinstance(state, dict) else lambda name: getattr(state, name)
    ema = use_ema and get("ema_params")
    out = {"params": ema if ema else get("params")}
    stats = get("ema_batch_stats") if ema and get("ema_batch_stats") is not None else get("batch_stats")
    if stats:
        out["batch_stats"] = stats
    return out


def eval_step(variables: dict, batch: dict, *, model: nn.Module, cfg: StepConfig):
    """Forward in eval mode with ``variables`` (:func:`eval_variables`). Returns global SUMS over real
    examples (``loss``, ``correct1``, ``correct5``, ``count``) to accumulate across batches, and
    per-example ``pred`` / ``label`` / ``mask`` (sharded along the batch) for per-class accuracy and
    confusion matrices."""
    mask = batch["mask"].astype(jnp.float32)
    logits = model.apply(variables, batch["image"], train=False)
    logits = logits.astype(jnp.float32)
    sums = {
        "loss": psum(jnp.sum(per_example_loss(logits, batch["label"], cfg) * mask)),
        "correct1": psum(jnp.sum(_correct(logits, batch["label"], 1) * mask)),
        "correct5": psum(jnp.sum(_correct(logits, batch["label"], 5) * mask)),
        "count": psum(mask.sum()),
    }
    per_example = {"pred": jnp.argmax(logits, -1).astype(jnp.int32), "label": batch["label"], "mask": mask}
    return sums, per_example
