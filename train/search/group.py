"""Trials side by side: a group of trials whose configs differ only in numbers the step takes as
inputs, trained by ONE compiled program on the same batches.

    groups = partition(members, cap=8)        # members: (trial number, {path: value}, config)
    g = Group.build(groups[0])                # one run (pipelines, model), optimizer fields injected
    states = g.initial_state()                # host TrainState with a leading trial axis (T, ...)
    train_fn, eval_fn = g.compile(states)     # the ONE per-device step, vmapped over trials

What a group varies (:data:`VMAPPED`): the optimizer's numeric fields live in each trial's
optimizer state (``optax.inject_hyperparams``; the learning rate as the peak of its schedule,
``train.optim.PeakSchedule``); ``label_smoothing`` and ``optimizer.ema_decay`` become per-trial
``StepConfig`` fields, ``model_kwargs.dropout`` / ``bn_momentum`` per-trial model fields. Every other
searched field (architecture, batch size, optimizer kind, image size, schedule shape, seed ...)
changes the program or the data, so it splits trials into separate groups; so does a zero in a
field whose zero leaves a transform out (:data:`ZERO_CHANGES_STRUCTURE`).

The state's trial axis is mapped by ``jax.vmap`` inside the plan's pmap / shard_map wrapper
(``train.parallel.compile_step``), so collectives (gradient psum, synchronised BatchNorm) stay over
the data axis; with ``trial_devices > 1`` the trials are split over rows of a 2-D mesh. Every trial
starts from the same initial parameters and dropout key as its config trained alone (same seed),
and sees the same batches, so trial i ends where ``train.fit`` of its config would (tested).
``chunk`` trials are vmapped at once and chunks run one after the other (``jax.lax.map``; a chunk
of one: the single-trial step in a loop over the trials): on XLA:CPU one at a time is fastest, with
the convolutions as matmuls (``conv_impl='cpu_matmul'``); see NOTES.md.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from train import optim, parallel, setup, step
from train.evaluation import EvalAbandoned

log = logging.getLogger("train")

# config path -> (where a group puts the per-trial value, the field there)
VMAPPED = {**{f"optimizer.{f}": ("optimizer", f) for f in optim.INJECTABLE},
           "label_smoothing": ("step", "label_smoothing"), "optimizer.ema_decay": ("step", "ema_decay"),
           "model_kwargs.dropout": ("model", "dropout"), "model_kwargs.bn_momentum": ("model", "bn_momentum")}
# a zero here leaves a transform (or the EMA) out of the program: zero and non-zero are separate groups
ZERO_CHANGES_STRUCTURE = ("optimizer.weight_decay", "optimizer.momentum", "optimizer.ema_decay",
                          "optimizer.grad_clip_norm")


class GroupTooLargeError(MemoryError):
    """The devices cannot hold a group of this many trials (the message gives the size that fits)."""


@dataclasses.dataclass(frozen=True)
class Member:
    number: int                       # the Optuna trial number
    values: dict                      # {config path: value} of the searched fields
    config: ml_collections.ConfigDict  # the trial's full config


def structure(values: dict) -> tuple:
    """What must be equal for two trials to share a group: every searched value the step does not
    take as an input, and for :data:`ZERO_CHANGES_STRUCTURE` whether the value is zero."""
    key = []
    for path, value in sorted(values.items()):
        if path not in VMAPPED:
            key.append((path, json.dumps(value)))
        elif path in ZERO_CHANGES_STRUCTURE:
            key.append((path, value == 0))
    return tuple(key)


def partition(members: list[Member], cap: int | None = None) -> list[list[Member]]:
    """Members split into groups of one structure, at most ``cap`` trials each, in trial order."""
    by_key: dict[tuple, list[Member]] = {}
    for m in members:
        by_key.setdefault(structure(m.values), []).append(m)
    cap = cap or max(len(v) for v in by_key.values())
    return [ms[i:i + cap] for ms in by_key.values() for i in range(0, len(ms), cap)]


def vmapped(members: list[Member]) -> tuple[str, ...]:
    """The searched paths that may differ inside a group of ``members``."""
    return tuple(p for p in members[0].values if p in VMAPPED)


def injected(fields) -> tuple[str, ...]:
    """The optimizer fields a group's run keeps in the optimizer state (``setup.build(inject=...)``)."""
    return tuple(VMAPPED[p][1] for p in fields if VMAPPED[p][0] == "optimizer")


def _where(fields, place: str) -> dict[str, str]:
    return {VMAPPED[p][1]: p for p in fields if VMAPPED[p][0] == place}


def trial_fn(run: setup.Run, fields: tuple[str, ...]):
    """The train step of ONE trial, ``(state, batch, values) -> (state, metrics)``: ``step.train_step``
    with the trial's model and step-config fields from ``values`` (``{path: scalar}``)."""
    model_f, step_f = _where(fields, "model"), _where(fields, "step")

    def one(state, batch, values):
        model = run.model.clone(**{f: values[p] for f, p in model_f.items()}) if model_f else run.model
        cfg = dataclasses.replace(run.step_config, **{f: values[p] for f, p in step_f.items()})
        return step.train_step(state, batch, model=model, tx=run.tx, cfg=cfg)
    return one


def eval_fn(run: setup.Run, fields: tuple[str, ...]):
    """The eval step of ONE trial, ``(variables, batch, values) -> sums`` (``step.eval_step``'s)."""
    step_f = {f: p for f, p in _where(fields, "step").items() if f == "label_smoothing"}

    def one(variables, batch, values):
        cfg = dataclasses.replace(run.step_config, **{f: values[p] for f, p in step_f.items()})
        return step.eval_step(variables, batch, model=run.model, cfg=cfg)[0]
    return one


def over_trials(one, chunk: int | None = None):
    """``one(x, batch, values)`` mapped over the leading trial axis of ``x`` and ``values``, ``chunk``
    trials vmapped at a time (None: all at once)."""
    def mapped(x, batch, values):
        n = jax.tree.leaves(x)[0].shape[0]
        fn = lambda xv: one(xv[0], batch, xv[1])  # noqa: E731
        if chunk is None or chunk >= n:
            return jax.vmap(fn)((x, values))
        return jax.lax.map(fn, (x, values), batch_size=chunk if chunk > 1 else None)
    return mapped


@dataclasses.dataclass
class Group:
    run: setup.Run                     # built from the first member's config; optimizer fields injected
    members: list[Member]
    fields: tuple[str, ...]            # the searched paths that vary inside the group
    chunk: int | None = None

    def __post_init__(self):
        # XLA:CPU runs convolutions 5-20x slower inside the loop over trials than alone (NOTES.md): a
        # group on CPU computes them as matmuls (the same parameters; results up to summation order)
        if self.run.model.conv_impl == "cpu":
            self.run = dataclasses.replace(self.run, model=self.run.model.clone(conv_impl="cpu_matmul"))

    @classmethod
    def build(cls, members: list[Member], *, chunk: int | None = None) -> "Group":
        """The group of ``members`` (one structure): its run built once by ``train.setup.build``, the
        trial axis over ``config.trial_devices`` devices."""
        fields, config = vmapped(members), members[0].config
        run = setup.build(config, inject=injected(fields), trial_devices=int(config.get("trial_devices", 1)))
        return cls(run, list(members), fields, chunk)

    @property
    def size(self) -> int:
        return len(self.members)

    def padded(self) -> int:
        """The trial axis' length: the group's size rounded up to a multiple of the trial devices
        (the extra trials repeat the last one and are ignored)."""
        t = self.run.plan.trial_devices
        return -(-self.size // t) * t

    def _column(self, path: str) -> np.ndarray:
        v = [float(m.values[path]) for m in self.members]
        return np.asarray(v + v[-1:] * (self.padded() - self.size), np.float32)

    def values(self) -> dict[str, np.ndarray]:
        """The per-trial inputs of the step: ``{path: (T,) float32}`` for the step and model fields."""
        return {p: self._column(p) for p in self.fields if VMAPPED[p][0] != "optimizer"}

    def initial_state(self, one: step.TrainState | None = None) -> step.TrainState:
        """Host state with a leading trial axis: the run's fresh state ``one`` (default: computed now;
        the same parameters and dropout key for every trial, as each config alone) with each trial's
        optimizer values."""
        one = self.run.fresh_state() if one is None else one
        states = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x)[None], (self.padded(), *np.shape(x))), one)
        inject = {VMAPPED[p][1]: self._column(p) for p in self.fields if VMAPPED[p][0] == "optimizer"}
        if inject:
            states = states.replace(opt_state=optim.set_hyperparams(states.opt_state, inject))
        return jax.tree.map(np.array, states)

    def compile(self, states, values, batch, *, memory_limit: int | None = None):
        """``(train_fn, eval_fn)`` for the plan, compiled for these device arguments; the train step is
        checked against the devices' memory first (:class:`GroupTooLargeError`)."""
        plan = self.run.plan
        train = parallel.compile_step(over_trials(trial_fn(self.run, self.fields), self.chunk), plan,
                                      trial_argnums=(0, 2))
        compiled = train.lower(states, batch, values).compile()
        check_memory(compiled, self, memory_limit)
        evaluate = parallel.compile_step(over_trials(eval_fn(self.run, self.fields), self.chunk), plan,
                                         trial_argnums=(0, 2), donate_state=False)
        return compiled, evaluate

    def single_state(self, states, i: int) -> step.TrainState:
        """Trial ``i`` of a host group state, in the structure of its config trained alone (what
        ``train.fit`` restores): the injected optimizer entries dropped, the learning rate kept."""
        member = self.members[i]
        alone = setup.make(member.config, plan=self.run.plan, model_kwargs=trial_kwargs(self.run, member),
                           input_shape=self.run.input_shape, steps_per_epoch=self.run.steps_per_epoch,
                           total_steps=self.run.total_steps).abstract_state()
        mine = {jax.tree_util.keystr(k): v[i] for k, v in jax.tree_util.tree_flatten_with_path(states)[0]}
        leaves, treedef = jax.tree_util.tree_flatten_with_path(alone)
        return jax.tree_util.tree_unflatten(treedef, [np.asarray(mine[jax.tree_util.keystr(k)]) for k, _ in leaves])


class Programs:
    """What a search builds and compiles once and reuses for every later group of the same structure:
    the group's run (pipelines, model), its fresh state, and per group size its compiled train and
    eval steps. Groups of one structure differ only in the step's inputs (the module docstring: one
    program for all of a group's trials), so with ``--parallel-trials 1`` a search compiles its step
    once, not once per trial. The :data:`KEPT` structures used last are kept."""

    KEPT = 4

    def __init__(self):
        self._kept: dict[tuple, dict] = {}   # structure key -> {run, fresh, steps: {size: (train, eval)}}

    @staticmethod
    def _key(members: list[Member], chunk: int | None) -> tuple:
        return structure(members[0].values), vmapped(members), chunk

    def group(self, members: list[Member], *, chunk: int | None = None) -> Group:
        """``Group.build(members, chunk=chunk)``, with the run of an earlier group of this structure."""
        key = self._key(members, chunk)
        entry = self._kept.pop(key, None)
        if entry is None:
            entry = {"run": Group.build(members, chunk=chunk).run, "fresh": None, "steps": {}}
        self._kept[key] = entry   # most recently used last
        while len(self._kept) > self.KEPT:
            self._kept.pop(next(iter(self._kept)))
        return Group(entry["run"], list(members), vmapped(members), chunk)

    def _entry(self, g: Group) -> dict:
        return self._kept[self._key(g.members, g.chunk)]   # made by group(), the newest: never dropped yet

    def initial_state(self, g: Group) -> step.TrainState:
        """``g.initial_state()`` from the fresh state its structure computed first."""
        entry = self._entry(g)
        if entry["fresh"] is None:
            entry["fresh"] = g.run.fresh_state()
        return g.initial_state(entry["fresh"])

    def compile(self, g: Group, states, values, batch, *, memory_limit: int | None = None):
        """``g.compile(...)``, or the steps an earlier group of its structure and size compiled."""
        steps = self._entry(g)["steps"]
        if g.padded() not in steps:
            steps[g.padded()] = g.compile(states, values, batch, memory_limit=memory_limit)
        return steps[g.padded()]


def trial_kwargs(run: setup.Run, member: Member) -> dict:
    """The model constructor arguments of a member's config (stored with its checkpoint)."""
    return setup.model_kwargs(member.config, run.model_kwargs["num_classes"])


def evaluate(evaluate_fn, variables, values, run: setup.Run, n: int, stop=None) -> list[dict]:
    """Loss, top-1 and top-5 of each of the first ``n`` trials on the run's eval split. ``stop``:
    asked before each batch; True abandons the pass (``evaluation.EvalAbandoned``)."""
    sums = None
    batches = iter(run.eval_pipe)
    for i, batch in enumerate(batches):
        if stop is not None and stop():
            batches.close()   # its workers end now
            raise EvalAbandoned(f"evaluation abandoned after {i} of {run.eval_pipe.steps_per_epoch} batches")
        s = evaluate_fn(variables, parallel.put_batch(batch, run.plan), values)
        sums = s if sums is None else jax.tree.map(jnp.add, sums, s)
    sums = parallel.get_trials(sums, run.plan)
    count = np.maximum(sums["count"], 1)
    return [{"loss": float(sums["loss"][i] / count[i]), "top1": float(sums["correct1"][i] / count[i]),
             "top5": float(sums["correct5"][i] / count[i])} for i in range(n)]


# ----------------------------------------------------------------------------- memory

def _bytes(compiled) -> int | None:
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001  (not every backend reports it)
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def available_bytes(device) -> int | None:
    """Memory one device offers: the accelerator's limit, or the host's available RAM on CPU."""
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001
        stats = {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return host_available_bytes()


def host_available_bytes(meminfo: str = "/proc/meminfo") -> int | None:
    """The host RAM a new allocation can get: Linux's ``MemAvailable`` (free pages plus the page cache
    and reclaimable slab the kernel gives back on demand), else the free pages alone. Free pages alone
    understate it badly on a machine that has read files for a while (2026-12-03: 0.89 GiB free of
    ~20 GiB available after a test run)."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(compiled, group: Group, limit: int | None) -> None:
    """Raise :class:`GroupTooLargeError` when the compiled group step needs more than ``limit`` bytes
    per device (default: what the device offers), giving the group size that fits."""
    need = _bytes(compiled)
    limit = limit if limit is not None else available_bytes(group.run.plan.devices[0])
    if need is None or limit is None or need <= limit:
        return
    t = group.padded()
    per_trial = max(1, need // t)  # an upper bound: the batch and program are shared, the rest grows with T
    fits = max(0, min(t - 1, limit // per_trial)) // group.run.plan.trial_devices * group.run.plan.trial_devices
    gib = 2.0 ** 30
    raise GroupTooLargeError(
        f"a group of {t} trials needs {need / gib:.2f} GiB per device, more than the {limit / gib:.2f} GiB available"
        + (f"; {fits} trials fit: use --parallel-trials {fits}" if fits else "; not even one trial fits"))
