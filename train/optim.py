"""Optimizers, learning-rate schedules, freezing and parameter EMA, built from the config
(``c.optimizer.*``, ``c.schedule.*``, ``c.transfer.freeze`` / ``c.transfer.backbone_lr_mult``).

Pure functions; optax does the work.

    tx, schedule = make_optimizer(config, steps_per_epoch=spe, total_steps=n, head=info.head)
    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, opt_state, params)   # always pass params
    params = optax.apply_updates(params, updates)
    lr = current_lr(opt_state)            # the lr of the last applied update (schedule(0) before any)

Units. ``make_optimizer`` takes ``steps_per_epoch`` and ``total_steps`` in TRAIN STEPS (calls of
``tx.update``, one per (micro-)batch). ``make_schedule`` and the schedule that ``make_optimizer``
returns count OPTIMIZER UPDATES. They differ only under gradient accumulation
(``optimizer.accumulate_steps = k > 1``): ``tx`` is then ``optax.MultiSteps`` around the optimizer,
which averages k micro-batch gradients and calls the inner optimizer once, so the inner optimizer
(and its schedule) sees update ``n`` at train step ``(n + 1) * k - 1``. The schedule is therefore
built over ``total_steps // k`` updates with ``steps_per_epoch / k`` updates per epoch, and the
learning rate of train step ``s`` is ``schedule(s // k)`` (what ``current_lr(opt_state)`` reads from
the state, exactly, even when non-finite steps were skipped and ``s // k`` drifted).

Structure of ``tx`` (outermost first)::

    MultiSteps(every_k_schedule=k)                       # only when k > 1
      inject_hyperparams(learning_rate=schedule)         # the lr lives in opt_state: current_lr()
        chain(
          masked(set_to_zero, frozen)                    # only when something is frozen
          clip_by_global_norm(grad_clip_norm)            # only when > 0: on the (averaged) gradient
                                                         # of the trainable parameters
          partition({'train': opt(lr), 'backbone': opt(lr * backbone_lr_mult),
                     'frozen': set_to_zero()})           # only with freezing / backbone_lr_mult != 1
        )

Weight decay is applied to kernels only (``ndim > 1``): never to biases, norm scales/offsets, or any
other vector (the Flax ImageNet example's and TF-slim's rule); ``optimizer.decay_all=True`` decays
every parameter, as torchvision's reference script does without ``--norm-weight-decay``. sgd / adam / rmsprop: coupled L2 (PyTorch ``weight_decay``), ``wd * p`` added to the
gradient before the optimizer (``optax.add_decayed_weights``). adamw / lamb / lars: their own
decoupled ``weight_decay`` with the same mask. (In optax, as in PyTorch's AdamW, the adamw decay is
multiplied by the learning rate: ``p -= lr * (adam_step + wd * p)``.)
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from configs import default as _default
from train import schedules as _schedules
from train.schedules import SCHEDULES, PeakSchedule, make_schedule, warn_unread
from train.schedules import allowed as _allowed, check as _check

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "lars", "lamb")
# the optimizer fields each optimizer.name reads (_base_optimizer), besides name and those every one reads:
# learning_rate, weight_decay, decay_all there, grad_clip_norm, accumulate_steps (make_optimizer), ema_* (the step)
READS = {"sgd": ("momentum", "nesterov"), "adam": ("b1", "b2", "eps"), "adamw": ("b1", "b2", "eps"),
         "rmsprop": ("momentum", "rms_decay", "rms_eps"), "lars": ("momentum", "trust_coefficient"),
         "lamb": ("b1", "b2", "eps")}
READ_BY_ALL = ("learning_rate", "weight_decay", "decay_all", "grad_clip_norm", "accumulate_steps", "ema_decay",
               "ema_warmup")
# optimizer fields that make_optimizer(inject=...) can keep in the optimizer state (search groups)
INJECTABLE = ("learning_rate", "weight_decay", "momentum", "b1", "b2", "eps", "rms_decay", "rms_eps",
              "trust_coefficient", "grad_clip_norm")

__all__ = ["OPTIMIZERS", "SCHEDULES", "INJECTABLE", "READS", "READ_BY_ALL", "fields_read", "Freezing",
           "PeakSchedule", "set_hyperparams", "make_schedule", "make_optimizer", "trainable_mask", "decay_mask",
           "param_labels", "current_lr", "is_update_step", "ema_update"]


def fields_read(section: str, name: str) -> tuple[str, ...]:
    """The fields of ``c.<section>`` ('optimizer' or 'schedule') that ``<section>.name=name`` reads."""
    reads, by_all = (READS, READ_BY_ALL) if section == "optimizer" else (_schedules.READS, _schedules.READ_BY_ALL)
    return (*by_all, *reads.get(name, ()))


# ------------------------------------------------------------------------------------- masks / labels

def _key_str(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _path(path) -> str:
    return "/".join(_key_str(k) for k in path)


def _compile_freeze(freeze: str) -> re.Pattern | None:
    """None for 'none' / 'backbone', else the compiled regex (ValueError naming transfer.freeze)."""
    _check(isinstance(freeze, str) and freeze != "", "transfer.freeze", freeze,
           "allowed 'none', 'backbone' or a regex over '/'-joined parameter paths")
    if freeze in ("none", "backbone"):
        return None
    try:
        return re.compile(freeze)
    except re.error as e:
        raise ValueError(f"transfer.freeze={freeze!r}: not a valid regex ({e}); allowed 'none', 'backbone' "
                         f"or a regex over '/'-joined parameter paths") from None


@dataclasses.dataclass(frozen=True)
class Freezing:
    """What transfer learning freezes and slows down, checked once: ``transfer.freeze``,
    ``transfer.backbone_lr_mult`` and the model's head (``ModelInfo.head``, the classifier's
    top-level modules, e.g. ``('fc',)``). ``train.setup`` resolves it once per run; the optimizer's
    labels and the step's BatchNorm-statistics mask both come from it.

    - freeze 'none': everything trainable.
    - 'backbone': trainable only under the head's top-level modules; a model's head usually has no
      batch_stats, so all of them come out frozen.
    - anything else: a regex, ``re.search``-ed against the '/'-joined path (``'layer1_0/bn1/scale'``);
      matching leaves are FROZEN.
    """

    freeze: str = "none"
    head: tuple[str, ...] = ()
    backbone_lr_mult: float = 1.0
    pattern: re.Pattern | None = dataclasses.field(init=False, repr=False, compare=False)  # the freeze regex
    _said: bool = dataclasses.field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self):
        object.__setattr__(self, "head", tuple(self.head))
        object.__setattr__(self, "pattern", _compile_freeze(self.freeze))
        _check(math.isfinite(self.backbone_lr_mult) and self.backbone_lr_mult >= 0, "transfer.backbone_lr_mult",
               self.backbone_lr_mult, "must be a finite number >= 0")
        if self.uses_head:
            field, value = (("transfer.freeze", self.freeze) if self.freeze == "backbone"
                            else ("transfer.backbone_lr_mult", self.backbone_lr_mult))
            _check(len(self.head) > 0, field, value, "needs the model's head (ModelInfo.head), got head=()")

    @classmethod
    def from_config(cls, config, head: Sequence[str] = ()) -> "Freezing":
        """From ``config.transfer`` (absent: nothing frozen) and the model's head."""
        transfer = config.get("transfer", None)
        if transfer is None:
            return cls(head=tuple(head))
        return cls(transfer.freeze, tuple(head), float(transfer.backbone_lr_mult))

    @property
    def uses_head(self) -> bool:
        return self.freeze == "backbone" or self.backbone_lr_mult != 1.0

    def trainable(self, tree) -> Any:
        """Pytree of Python bools over ``tree`` (True = trainable). ``tree`` is ONE variables
        collection keyed by flax module paths: ``params`` or ``batch_stats`` (not the
        ``{'params': ..., 'batch_stats': ...}`` dict: paths start at the top-level module)."""
        if hasattr(tree, "keys") and {"params", "batch_stats"} & set(tree.keys()):
            raise ValueError("trainable_mask takes one variables collection (variables['params'] or "
                             f"variables['batch_stats']), got a tree with top-level keys {sorted(tree.keys())}")

        def trainable(path, _):
            if self.freeze == "none":
                return True
            if self.freeze == "backbone":
                return _key_str(path[0]) in self.head
            return self.pattern.search(_path(path)) is None

        return jax.tree_util.tree_map_with_path(trainable, tree)

    def labels(self, params) -> Any:
        """Label pytree over ``params``: 'frozen', 'backbone' (trainable, outside the head, only when
        ``backbone_lr_mult != 1``) or 'train'. Checks made here, on the real parameter tree:

        - the head's classifier (its last module) must be a top-level module of ``params`` when the
          head is used (auxiliary classifiers before it may be absent: ``aux_logits=False``);
        - a regex that matches NO parameter is a ValueError (a typo would otherwise silently train the
          whole network);
        - freezing every parameter only warns (it may be intended, e.g. a BN-statistics-only run).
        """
        if self.uses_head:
            top = set(params.keys()) if hasattr(params, "keys") else set()
            missing = [h for h in self.head if h not in top]
            if self.head[-1] in missing:
                raise ValueError(f"model head {self.head} not found in params: missing {missing}; "
                                 f"top-level modules: {sorted(top)}")
        trainable = self.trainable(params)
        flags = jax.tree.leaves(trainable)
        if flags and self.pattern is not None and all(flags):
            raise ValueError(f"transfer.freeze={self.freeze!r}: the regex matches no parameter path "
                             f"(paths look like {_path(jax.tree_util.tree_flatten_with_path(params)[0][0][0])!r})")
        if flags and not any(flags) and not self._said:   # labels() runs at every tx.init: said once
            object.__setattr__(self, "_said", True)
            logging.getLogger("train").warning("transfer.freeze=%r freezes every parameter: the optimizer changes "
                                               "nothing", self.freeze)

        def label(path, is_trainable):
            if not is_trainable:
                return "frozen"
            if self.backbone_lr_mult != 1.0 and _key_str(path[0]) not in self.head:
                return "backbone"
            return "train"

        return jax.tree_util.tree_map_with_path(label, trainable)


def trainable_mask(tree, freeze: str, head: Sequence[str] = ()) -> Any:
    """``Freezing(freeze, head).trainable(tree)``: pytree of Python bools over ONE variables
    collection (True = trainable); see :class:`Freezing`. Invalid regex: ValueError."""
    return Freezing(freeze, tuple(head)).trainable(tree)


def decay_mask(tree) -> Any:
    """True for leaves that get weight decay: kernels (``ndim > 1``); never biases or norm parameters."""
    return jax.tree.map(lambda x: (x.ndim if hasattr(x, "ndim") else jnp.ndim(x)) > 1, tree)


def param_labels(params, freeze: str, head: Sequence[str] = (), backbone_lr_mult: float = 1.0) -> Any:
    """``Freezing(freeze, head, backbone_lr_mult).labels(params)``: 'frozen', 'backbone' or 'train'
    per parameter; see :meth:`Freezing.labels` for the checks made on the real parameter tree."""
    return Freezing(freeze, tuple(head), float(backbone_lr_mult)).labels(params)


# ----------------------------------------------------------------------------------------- optimizer

def _base_optimizer(o, learning_rate, hp: dict) -> optax.GradientTransformation:
    """The optimizer named by ``o.name`` at ``learning_rate`` (a scalar), weight decay included.
    ``hp``: injected values of ``o``'s numeric fields (:data:`INJECTABLE`), which replace the config's;
    which transforms are chained still follows ``o`` (a zero weight decay or momentum leaves one out)."""
    def v(field):
        return hp[field] if field in hp else float(o[field])

    name, wd, momentum = o.name, v("weight_decay"), v("momentum")
    mask = None if o.get("decay_all", False) else decay_mask   # None: every parameter (torchvision's default)
    coupled_l2 = [optax.add_decayed_weights(wd, mask=mask)] if float(o.weight_decay) > 0 else []
    if name == "sgd":
        return optax.chain(*coupled_l2, optax.sgd(learning_rate, momentum=momentum if float(o.momentum) else None,
                                                  nesterov=bool(o.nesterov)))
    if name == "adam":
        return optax.chain(*coupled_l2, optax.adam(learning_rate, b1=v("b1"), b2=v("b2"), eps=v("eps")))
    if name == "rmsprop":
        # TF1 RMSProp (tf.train.RMSPropOptimizer, the MobileNet/EfficientNet recipes; timm's RMSpropTF):
        #   ms  = rms_decay * ms + (1 - rms_decay) * g**2        ms starts at 1 (initial_scale=1)
        #   mom = momentum * mom + lr * g / sqrt(ms + rms_eps)   eps INSIDE the sqrt (eps_in_sqrt=True)
        #   p  -= mom                                             lr inside the momentum buffer
        # optax.rmsprop chains scale_by_rms -> scale_by_learning_rate -> trace(momentum): the same order.
        # PyTorch's RMSprop instead uses sqrt(ms) + eps and ms starting at 0.
        return optax.chain(*coupled_l2, optax.rmsprop(learning_rate, decay=v("rms_decay"), eps=v("rms_eps"),
                                                      initial_scale=1.0, eps_in_sqrt=True,
                                                      momentum=momentum if float(o.momentum) else None))
    if name == "adamw":
        return optax.adamw(learning_rate, b1=v("b1"), b2=v("b2"), eps=v("eps"), weight_decay=wd, mask=mask)
    if name == "lamb":
        return optax.lamb(learning_rate, b1=v("b1"), b2=v("b2"), eps=v("eps"), weight_decay=wd, mask=mask)
    # lars: biases and norm parameters are excluded from the layer-wise trust ratio as well as from weight
    # decay (as in the SimCLR/BYOL LARS): they get plain momentum SGD.
    return optax.lars(learning_rate, weight_decay=wd, weight_decay_mask=True if mask is None else mask,
                      trust_coefficient=v("trust_coefficient"), trust_ratio_mask=decay_mask, momentum=momentum)


def _validate_optimizer(o) -> None:
    _check(o.name in OPTIMIZERS, "optimizer.name", o.name, f"allowed {_allowed(OPTIMIZERS)}")
    _check(float(o.weight_decay) >= 0, "optimizer.weight_decay", o.weight_decay, "must be >= 0")
    _check(0 <= float(o.momentum) < 1, "optimizer.momentum", o.momentum, "must be in [0, 1)")
    if o.name == "sgd" and o.nesterov:
        _check(float(o.momentum) > 0, "optimizer.nesterov", o.nesterov, "needs optimizer.momentum > 0")
    if o.name in ("adam", "adamw", "lamb"):
        _check(0 <= float(o.b1) < 1, "optimizer.b1", o.b1, "must be in [0, 1)")
        _check(0 <= float(o.b2) < 1, "optimizer.b2", o.b2, "must be in [0, 1)")
        _check(float(o.eps) >= 0, "optimizer.eps", o.eps, "must be >= 0")
    if o.name == "rmsprop":
        _check(0 <= float(o.rms_decay) < 1, "optimizer.rms_decay", o.rms_decay, "must be in [0, 1)")
        _check(float(o.rms_eps) > 0, "optimizer.rms_eps", o.rms_eps, "must be > 0")
    if o.name == "lars":
        _check(float(o.trust_coefficient) > 0, "optimizer.trust_coefficient", o.trust_coefficient, "must be > 0")
    _check(float(o.grad_clip_norm) >= 0, "optimizer.grad_clip_norm", o.grad_clip_norm, "must be >= 0 (0: off)")
    _check(0 <= float(o.ema_decay) < 1, "optimizer.ema_decay", o.ema_decay, "must be in [0, 1) (0: off)")
    k = o.accumulate_steps
    _check(isinstance(k, int) and not isinstance(k, bool) and k >= 1, "optimizer.accumulate_steps", k,
           "must be an int >= 1")


def make_optimizer(config, *, steps_per_epoch: float, total_steps: int, head: Sequence[str] = (),
                   freezing: Freezing | None = None,
                   inject: Sequence[str] = ()) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """``(tx, schedule)`` from the full config (``c.optimizer``, ``c.schedule``, ``c.transfer``).

    ``steps_per_epoch`` / ``total_steps`` are in TRAIN STEPS (``tx.update`` calls); with
    ``accumulate_steps = k`` the schedule is built over ``total_steps // k`` optimizer updates,
    ``steps_per_epoch / k`` per epoch. The returned ``schedule`` counts OPTIMIZER UPDATES: the lr
    of train step ``s`` is ``schedule(s // k)``; ``current_lr(opt_state)`` reads the same value
    from the state. With ``backbone_lr_mult = m != 1`` the backbone's lr is ``m`` times that.

    ``freezing``: the run's :class:`Freezing` (``train.setup`` resolves it once); default
    ``Freezing.from_config(config, head)`` with ``head`` = ``ModelInfo.head`` (needed for
    ``transfer.freeze='backbone'`` and ``backbone_lr_mult != 1``). Frozen parameters get
    ``optax.set_to_zero()`` (no weight decay, no optimizer state, bit-identical forever) and are
    excluded from gradient clipping. Freezing is resolved at ``tx.init(params)`` from the parameter
    paths (errors for a freeze regex matching no parameter and for a head missing from params are
    raised there). ``tx.update`` needs ``params``.

    ``inject``: ``optimizer`` fields (:data:`INJECTABLE`) kept in the optimizer state rather than in
    the program, so that the trials of a search group (``train.search``) differ in them under
    ``jax.vmap`` (:func:`set_hyperparams`); the state gains those entries, updates are the same.
    ``'learning_rate'`` makes the schedule's peak a state entry (:class:`PeakSchedule`).

    A field the chosen optimizer or schedule does not read (:data:`READS`, ``train.schedules.READS``)
    set to other than configs/default.py's value is a warning each: ``optimizer.momentum=0.5 is not
    read by optimizer.name='adam' (it reads ...)``.
    """
    o, s = config.optimizer, config.schedule
    _validate_optimizer(o)
    if freezing is None:
        freezing = Freezing.from_config(config, head)
    _check(steps_per_epoch > 0, "steps_per_epoch", steps_per_epoch, "must be > 0")
    k = o.accumulate_steps
    _check(total_steps >= k, "total_steps", total_steps, f"fewer train steps than optimizer.accumulate_steps={k}")

    unknown = sorted(set(inject) - set(INJECTABLE))
    _check(not unknown, "inject", tuple(inject), f"allowed {_allowed(INJECTABLE)}")
    schedule = make_schedule(s, peak_lr=float(o.learning_rate), steps_per_epoch=steps_per_epoch / k,
                             total_steps=total_steps // k)
    defaults = _default.get_config()
    for section, fields in (("optimizer", o), ("schedule", s)):
        warn_unread(section, fields, fields_read(section, fields.name), defaults[section])
    clip = float(o.grad_clip_norm)
    mult = freezing.backbone_lr_mult
    partitioned = freezing.freeze != "none" or mult != 1.0

    def frozen(tree):
        return jax.tree.map(lambda lab: lab == "frozen", freezing.labels(tree))

    def build(learning_rate, **hp):
        parts = []
        if freezing.freeze != "none":
            parts.append(optax.masked(optax.set_to_zero(), frozen))  # before clipping: norm of trainables only
        if clip > 0:
            parts.append(optax.clip_by_global_norm(hp.get("grad_clip_norm", clip)))
        if partitioned:
            parts.append(optax.partition({"train": _base_optimizer(o, learning_rate, hp),
                                          "backbone": _base_optimizer(o, learning_rate * mult, hp),
                                          "frozen": optax.set_to_zero()}, freezing.labels))
        else:
            parts.append(_base_optimizer(o, learning_rate, hp))
        return optax.chain(*parts)

    numeric = [f for f in INJECTABLE if f in inject and f != "learning_rate"]
    # inject_hyperparams binds keyword arguments by the factory's signature: name the injected ones
    build.__signature__ = inspect.Signature([inspect.Parameter(f, inspect.Parameter.KEYWORD_ONLY)
                                             for f in ("learning_rate", *numeric)])
    lr = PeakSchedule(make_schedule(s, peak_lr=1.0, steps_per_epoch=steps_per_epoch / k, total_steps=total_steps // k),
                      float(o.learning_rate)) if "learning_rate" in inject else schedule
    tx = optax.inject_hyperparams(build, hyperparam_dtype=jnp.float32)(learning_rate=lr,
                                                                       **{f: float(o[f]) for f in numeric})
    if k > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=k).gradient_transformation()
    return tx, schedule


# ---------------------------------------------------------------------------------- reading the state

def _inner(opt_state):
    """Unwrap MultiSteps to the inject_hyperparams state."""
    return opt_state.inner_opt_state if isinstance(opt_state, optax.MultiStepsState) else opt_state


def current_lr(opt_state) -> jax.Array:
    """Learning rate (of the head / non-backbone parameters) used by the LAST applied optimizer update,
    read from a ``make_optimizer`` state; ``schedule(0)`` before the first update. Under
    accumulation it changes only on the train steps that apply an update. Works inside jit;
    replicated (pmap) states give one value per device. The backbone's is
    ``transfer.backbone_lr_mult`` times this."""
    return _inner(opt_state).hyperparams["learning_rate"]


def set_hyperparams(opt_state, values: dict):
    """A copy of a ``make_optimizer(..., inject=...)`` state with the injected ``values``
    (``{field: value}``, fields given to ``inject``): per-trial arrays in a search group."""
    inner = _inner(opt_state)
    hyper, states = dict(inner.hyperparams), dict(inner.hyperparams_states)
    for field, value in values.items():
        if field == "learning_rate":  # PeakSchedule: the peak in its state, the rate of update 0 rescaled
            old, peak = inner.hyperparams_states[field].peak, jnp.asarray(value, jnp.float32)
            states[field] = states[field]._replace(peak=peak)
            hyper[field] = peak * jnp.where(old != 0, hyper[field] / jnp.where(old != 0, old, 1), 0)
        elif field in hyper:
            hyper[field] = jnp.asarray(value, jnp.float32)
        else:
            raise ValueError(f"{field!r} is not injected in this optimizer state (injected: {sorted(hyper)})")
    new = inner._replace(hyperparams=hyper, hyperparams_states=states)
    return opt_state._replace(inner_opt_state=new) if isinstance(opt_state, optax.MultiStepsState) else new


def is_update_step(opt_state) -> jax.Array:
    """Whether the ``tx.update`` that produced ``opt_state`` applied an optimizer update (always True
    without accumulation; with MultiSteps only on every k-th micro-step). Use it to gate the EMA."""
    if isinstance(opt_state, optax.MultiStepsState):
        return jnp.logical_and(opt_state.mini_step == 0, opt_state.gradient_step > 0)
    return jnp.asarray(True)


def updates_done(opt_state, step) -> jax.Array:
    """Optimizer updates applied so far, counting the one that produced ``opt_state``; ``step``: the
    train steps taken, that one included (micro-steps under accumulation)."""
    if isinstance(opt_state, optax.MultiStepsState):
        return opt_state.gradient_step
    return jnp.asarray(step)


def ema_decay_at(decay, updates, *, warmup: bool = False):
    """The EMA's decay after ``updates`` optimizer updates: ``decay``, or with ``warmup``
    ``min(decay, (1 + t) / (10 + t))`` (TensorFlow's ``ExponentialMovingAverage(num_updates=)``, the
    EfficientNet / MnasNet TPU code's): early averages follow the weights instead of the initialisation."""
    if not warmup:
        return decay
    t = jnp.asarray(updates, jnp.float32)
    return jnp.minimum(decay, (1.0 + t) / (10.0 + t))


def ema_update(ema_params, params, decay, *, active=True):
    """EMA: ``decay * ema + (1 - decay) * params`` (``optax.incremental_update``), leaf by leaf over any
    matching float pytree (the train step: params and BatchNorm statistics together, as timm's ModelEmaV2
    and torchvision's ``ExponentialMovingAverage(use_buffers=True)`` average buffers).

    The train step calls it after applying the update, with the EMA initialised to a copy of the
    initial variables and ``decay = ema_decay_at(c.optimizer.ema_decay, ...)``. ``active`` (bool or
    traced bool): False returns ``ema_params`` unchanged; pass ``is_update_step(new_opt_state)`` under
    gradient accumulation so the EMA advances once per optimizer update, not once per micro-batch."""
    decay = jnp.where(active, decay, 1.0)
    return optax.incremental_update(params, ema_params, 1.0 - decay)
