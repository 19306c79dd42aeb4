"""Learning-rate schedules built from ``c.schedule``, over OPTIMIZER UPDATES (``train.optim`` builds
the optimizer around them and explains the units), and :class:`PeakSchedule`, a schedule whose peak
lives in the optimizer state (the trials of a search group differ in it).

Pure functions; optax does the work.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("constant", "step", "multistep", "exponential", "cosine", "linear", "poly")


def allowed(values) -> str:
    return ", ".join(repr(v) for v in values)


def check(cond: bool, field: str, value: Any, must: str) -> None:
    if not cond:
        raise ValueError(f"{field}={value!r}: {must}")


def _check_rate(rate: float) -> None:
    check(0 < rate <= 1, "schedule.decay_rate", rate, "must be in (0, 1] (a factor > 1 would raise the learning rate)")


def _warn_after_the_end(field: str, value, bounds, warmup: int, total_steps: int) -> None:
    """Log a warning naming ``field`` when decays at ``bounds`` (updates after warmup) fall at or after
    the run's last update: the run never decays there (e.g. a recipe's milestones with fewer epochs)."""
    late = [b for b in bounds if warmup + b >= total_steps]
    if late:
        logging.getLogger("train").warning(
            "%s=%r: %s after the run's last update (%d of %d updates, warmup %d): the learning rate does not "
            "decay there", field, value, "every decay falls" if len(late) == len(bounds) else
            f"{len(late)} of {len(bounds)} decays fall", warmup + late[0], total_steps, warmup)


# the schedule fields each schedule.name reads (make_schedule), besides name and warmup_epochs (every one's)
READS = {"constant": (), "step": ("step_epochs", "decay_rate"), "multistep": ("milestones", "decay_rate"),
         "exponential": ("decay_epochs", "decay_rate"), "cosine": ("end_lr_factor",), "linear": ("end_lr_factor",),
         "poly": ("end_lr_factor", "power")}


def warn_unread(section: str, fields, reads: Sequence[str], defaults) -> None:
    """Log one warning per field of ``fields`` (``c.optimizer`` or ``c.schedule``) that ``section.name``
    does not read (not in ``reads``, the fields it does read) and that is set to other than its value in
    ``defaults`` (configs/default.py's ``section``): e.g. ``momentum`` with adam, ``milestones`` with
    cosine would otherwise be taken without a word. Fields the defaults lack are not judged; the lines come
    in the order of the fields' names (a ConfigDict iterates sorted)."""
    for field in defaults:
        if field == "name" or field in reads or field not in fields or fields[field] == defaults[field]:
            continue
        logging.getLogger("train").warning("%s.%s=%r is not read by %s.name=%r (it reads %s)", section, field,
                                           fields[field], section, fields.name, ", ".join(reads))


READ_BY_ALL = ("warmup_epochs",)


def make_schedule(schedule_cfg, *, peak_lr: float, steps_per_epoch: float, total_steps: int) -> optax.Schedule:
    """A learning-rate schedule over OPTIMIZER UPDATES (``schedule(n)`` = lr of update n, 0-based).

    ``schedule_cfg`` is ``c.schedule``. Epoch quantities become updates with ``steps_per_epoch``
    (updates per epoch, may be fractional); boundaries (warmup length, step period, milestones) are
    rounded to the nearest whole update, the exponential period is kept fractional.

    - 'constant': ``peak_lr``.
    - 'step': ``peak_lr * decay_rate ** floor(t / step_epochs)``.
    - 'multistep': ``peak_lr * decay_rate ** (number of milestones <= t)``.
    - 'exponential': ``peak_lr * decay_rate ** (t / decay_epochs)`` (continuous).
    - 'cosine': from ``peak_lr`` to ``end_lr_factor * peak_lr`` at ``total_steps``, then held.
    - 'linear': straight line from ``peak_lr`` to ``end_lr_factor * peak_lr`` at ``total_steps``
      (the ShuffleNet v1/v2 papers' policy), then held.
    - 'poly': Caffe's "poly" policy, ``end + (peak - end) * (1 - t / T) ** power`` (``end`` =
      ``end_lr_factor * peak_lr``, ``T`` = ``total_steps``; SqueezeNet's release: power 0.5), then held.

    ``warmup_epochs > 0``: linear warmup from 0 to ``peak_lr`` over the warmup updates, then the
    schedule above starts at the end of warmup (``optax.join_schedules``, as in the Flax ImageNet
    example and torchvision's SequentialLR): ``t`` counts epochs AFTER warmup, so with 5 warmup
    epochs ``milestones=(30, 60)`` decays at epochs 35 and 65, and cosine spans
    ``total_steps - warmup`` updates, ending exactly at ``total_steps``.
    """
    name = schedule_cfg.name
    check(name in SCHEDULES, "schedule.name", name, f"allowed {allowed(SCHEDULES)}")
    check(math.isfinite(peak_lr) and peak_lr >= 0, "optimizer.learning_rate", peak_lr, "must be a finite number >= 0")
    check(steps_per_epoch > 0, "steps_per_epoch", steps_per_epoch, "must be > 0")
    check(total_steps > 0, "total_steps", total_steps, "must be > 0 (optimizer updates)")
    warmup_epochs = float(schedule_cfg.warmup_epochs)
    check(warmup_epochs >= 0, "schedule.warmup_epochs", warmup_epochs, "must be >= 0")
    warmup = int(round(warmup_epochs * steps_per_epoch))
    check(total_steps - warmup > 0, "schedule.warmup_epochs", warmup_epochs,
          f"warmup ({warmup} updates) must end before the last update ({total_steps})")
    peak = float(peak_lr)

    def updates(epochs: float) -> int:
        return int(round(float(epochs) * steps_per_epoch))

    if name == "constant":
        main = optax.constant_schedule(peak)
    elif name == "step":
        step_epochs, rate = float(schedule_cfg.step_epochs), float(schedule_cfg.decay_rate)
        check(step_epochs > 0, "schedule.step_epochs", step_epochs, "must be > 0")
        _check_rate(rate)
        period = updates(step_epochs)
        check(period >= 1, "schedule.step_epochs", step_epochs,
               f"is less than one update ({steps_per_epoch} updates per epoch)")
        _warn_after_the_end("schedule.step_epochs", step_epochs, [period], warmup, total_steps)
        main = optax.exponential_decay(peak, transition_steps=period, decay_rate=rate, staircase=True)
    elif name == "multistep":
        milestones, rate = tuple(schedule_cfg.milestones), float(schedule_cfg.decay_rate)
        check(all(isinstance(m, (int, float)) and not isinstance(m, bool) for m in milestones),
              "schedule.milestones", milestones, "epochs must be numbers, e.g. (30, 60)")
        check(len(milestones) > 0, "schedule.milestones", milestones,
              "'multistep' needs at least one epoch, e.g. (30, 60)")
        milestones = tuple(float(m) for m in milestones)
        _check_rate(rate)
        check(all(m > 0 for m in milestones), "schedule.milestones", milestones, "epochs must be > 0")
        bounds = [updates(m) for m in milestones]
        check(all(b > a for a, b in zip([0] + bounds, bounds)), "schedule.milestones", milestones,
               "must be strictly increasing and at least one update apart")
        _warn_after_the_end("schedule.milestones", milestones, bounds, warmup, total_steps)
        main = optax.piecewise_constant_schedule(peak, {b: rate for b in bounds})
    elif name == "exponential":
        decay_epochs, rate = float(schedule_cfg.decay_epochs), float(schedule_cfg.decay_rate)
        check(decay_epochs > 0, "schedule.decay_epochs", decay_epochs, "must be > 0")
        _check_rate(rate)
        main = optax.exponential_decay(peak, transition_steps=decay_epochs * steps_per_epoch, decay_rate=rate)
    else:  # cosine / linear / poly: decay to end_lr_factor * peak at total_steps
        end = float(schedule_cfg.end_lr_factor)
        check(0 <= end <= 1, "schedule.end_lr_factor", end, "must be in [0, 1] (final lr = factor * peak)")
        if name == "cosine":
            main = optax.cosine_decay_schedule(peak, decay_steps=total_steps - warmup, alpha=end)
        else:
            power = float(schedule_cfg.power) if name == "poly" else 1.0
            check(power > 0, "schedule.power", power, "must be > 0")
            main = optax.polynomial_schedule(peak, end * peak, power, transition_steps=total_steps - warmup)

    if warmup <= 0:
        return main
    ramp = optax.linear_schedule(0.0, peak, transition_steps=warmup)
    return optax.join_schedules([ramp, main], [warmup])


class PeakState(NamedTuple):
    count: jax.Array   # int32: optimizer updates so far (as optax's WrappedScheduleState)
    peak: jax.Array    # float32: the peak learning rate


class PeakSchedule:
    """``peak * unit(count)``: a learning-rate schedule whose peak is part of the optimizer state
    (``inject_hyperparams`` keeps a stateful schedule's state there). Every schedule of
    :func:`make_schedule` is linear in its peak, so with ``unit = make_schedule(..., peak_lr=1)``
    this is the schedule of that peak."""

    def __init__(self, unit: optax.Schedule, peak: float):
        self.unit, self.peak = unit, peak

    def init(self) -> PeakState:
        return PeakState(jnp.zeros([], jnp.int32), jnp.asarray(self.peak, jnp.float32))

    def update(self, state: PeakState, **_) -> PeakState:
        return state._replace(count=optax.safe_increment(state.count))

    def __call__(self, state: PeakState, **_) -> jax.Array:
        return state.peak * self.unit(state.count)
