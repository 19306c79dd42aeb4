"""Train one group of trials side by side: ``run_group(members, trials, workdir, ...)``.

The loop of ``train.fit``, for a group (``train/search/group.py``): every step trains every trial
of the group on the same batch; every ``log_every_steps`` each trial's mean train metrics go to its
``WORKDIR/trials/<n>/metrics.jsonl``; every ``eval_every_epochs`` each trial is evaluated, its
validation top-1 reported to Optuna, and a trial that Optuna prunes (``--prune``) or whose loss went
non-finite (``stop_on_nonfinite``) leaves the group: the group is cut down to the trials still
running and the step compiled again for that size, so a pruned trial stops costing compute. At the
end the group's best trial is checkpointed (``WORKDIR/trials/<n>/checkpoints``, restorable with
``train.restore`` / ``train.evaluate``) when no finished trial of the study beats it, and every
trial's result is told to Optuna.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path

import jax
import numpy as np
from optuna.trial import TrialState

from train import checkpoint, lock, parallel, reporting, step
from train.search import group as group_mod, report
from train.evaluation import EvalAbandoned
from train.search.study import Trials

log = logging.getLogger("train")


class Interrupted(Exception):
    """A stop signal arrived; the group's trials were handed back to the study (they run again)."""


@dataclasses.dataclass
class Outcome:
    status: str                  # 'complete' | 'pruned' | 'failed'
    val: dict                    # the last evaluation: loss, top1, top5 (empty: never evaluated)
    steps: int = 0
    seconds: float = 0.0
    error: str = ""

    def attrs(self, spe: int) -> dict:
        return {"val_top1": self.val.get("top1"), "val_loss": self.val.get("loss"), "steps": self.steps,
                "seconds": round(self.seconds, 3), "steps_per_epoch": spe, "error": self.error}


def trial_dir(workdir: Path, number: int) -> Path:
    return Path(workdir) / "trials" / str(number)


@dataclasses.dataclass
class _Live:
    """The group being trained and its device state (rebuilt when trials leave it)."""

    group: group_mod.Group
    programs: group_mod.Programs
    states: object = None
    values: object = None
    train_fn: object = None
    eval_fn: object = None
    pending: list = dataclasses.field(default_factory=list)   # step metrics since the last train report
    nonfinite: set = dataclasses.field(default_factory=set)   # trials with a non-finite step so far


def run_group(members: list[group_mod.Member], trials: Trials, workdir: Path, *, prune: bool, stop,
              chunk: int | None = None, memory_limit: int | None = None,
              programs: group_mod.Programs | None = None) -> dict:
    """Train ``members`` as one group; returns ``{trial number: Outcome}`` (also told to Optuna).
    ``programs``: the search's :class:`train.search.group.Programs` (what earlier groups built and
    compiled; default: a new one). Each
    trial's folder is locked meanwhile (``lock.WorkdirLock``): a ``python -m train`` there interleaved
    its rows with the trial's, and its checkpoint took the place of the trial's own."""
    with contextlib.ExitStack() as held:
        for m in members:
            held.enter_context(lock.WorkdirLock(trial_dir(workdir, m.number)))
        return _train_group(members, trials, workdir, prune=prune, stop=stop, chunk=chunk, memory_limit=memory_limit,
                            programs=programs or group_mod.Programs())


def _train_group(members, trials, workdir, *, prune, stop, chunk, memory_limit, programs) -> dict:
    t0 = time.perf_counter()
    g = programs.group(members, chunk=chunk)
    run, plan = g.run, g.run.plan
    logs = {m.number: _metrics_log(workdir, m.number) for m in members}
    outcomes: dict[int, Outcome] = {}
    data = iter(run.train_pipe)
    batch = parallel.put_batch(next(data), plan)
    live = _place(_Live(g, programs), programs.initial_state(g), batch, memory_limit)
    last_eval: dict[int, dict] = {}
    eval_every = max(1, int(round(run.config.eval_every_epochs * run.steps_per_epoch)))
    evaluations = 0   # Optuna's step: pruners count evaluations
    try:
        for s in range(1, run.total_steps + 1):
            live.states, metrics = live.train_fn(live.states, batch, live.values)
            live.pending.append(metrics)
            at_eval = s % eval_every == 0 or s == run.total_steps
            if s % run.config.log_every_steps == 0 or at_eval:
                _report_train(live, logs, s)
            if at_eval:
                evaluations += 1
                leaving = _evaluate(live, logs, s, evaluations, trials, last_eval, prune, t0, outcomes, stop)
                if leaving and len(leaving) < live.group.size:
                    live = _cut(live, leaving, batch, memory_limit)
                elif leaving:
                    break
            if stop.signal:
                raise Interrupted(stop.signal)
            if s < run.total_steps:
                batch = parallel.put_batch(next(data), plan)
        for m in live.group.members:
            if m.number not in outcomes:
                outcomes[m.number] = Outcome("complete", last_eval.get(m.number, {}), run.total_steps,
                                             time.perf_counter() - t0)
        _checkpoint_best(live, outcomes, trials, workdir, data)
    finally:
        for lg in logs.values():
            lg.close()
    for m in members:
        o = outcomes[m.number]
        state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(o.status, TrialState.FAIL)
        trials.finish(trials.mine[m.number], state, o.val.get("top1"), o.attrs(run.steps_per_epoch))
    return outcomes


def _metrics_log(workdir: Path, number: int) -> reporting.MetricsLog:
    d = trial_dir(workdir, number)
    d.mkdir(parents=True, exist_ok=True)
    return reporting.MetricsLog(d, enabled=jax.process_index() == 0)


def _place(live: _Live, host_states, batch, memory_limit) -> _Live:
    """Put a group's host state and per-trial inputs on the devices and compile its steps."""
    plan = live.group.run.plan
    live.states = parallel.put_trials(host_states, plan)
    live.values = parallel.put_trials(live.group.values(), plan)
    live.train_fn, live.eval_fn = live.programs.compile(live.group, live.states, live.values, batch,
                                                        memory_limit=memory_limit)
    return live


def _report_train(live: _Live, logs: dict, s: int) -> None:
    """Each trial's mean train metrics since the last report, to its metrics log."""
    host = [parallel.get_trials(m, live.group.run.plan) for m in live.pending]
    for i, m in enumerate(live.group.members):
        mean = reporting.mean_metrics([jax.tree.map(lambda x: x[i], h) for h in host])
        logs[m.number].write(s, "train", mean)
        if mean["nonfinite_steps"]:
            live.nonfinite.add(m.number)
    live.pending = []


def pruning_order(top1: list[float], numbers: list[int]) -> list[int]:
    """The order in which a group's members ask the pruner: best first (ties: lower trial number). Optuna's
    successive halving ranks a trial among those that asked at that rung before it, so in member order a
    member met only the members before it (values 0.05, 0.30, 0.20, 0.10 kept 0.05 and pruned 0.20); best
    first, each member is ranked against every better one, i.e. against the whole group."""
    key = [(-(v if v == v else float("-inf")), n) for v, n in zip(top1, numbers)]   # NaN: last
    return sorted(range(len(top1)), key=key.__getitem__)


def _evaluate(live: _Live, logs: dict, s: int, k: int, trials: Trials, last_eval: dict, prune: bool, t0: float,
              outcomes: dict, stop=None) -> list[int]:
    """Evaluate every trial (evaluation ``k``) and report to Optuna; the indices of the trials that
    leave the group now (failed with a non-finite step under ``stop_on_nonfinite``, or pruned:
    asked once every trial has reported, best first (:func:`pruning_order`), so the pruner compares
    the whole group). A signal during it abandons it at the next batch (:class:`Interrupted`: the
    trials run again, so nothing of it is kept)."""
    g = live.group
    try:
        evs = group_mod.evaluate(live.eval_fn, step.eval_variables(live.states), live.values, g.run, g.size,
                                 stop=None if stop is None else lambda: stop.signal is not None)
    except EvalAbandoned:
        raise Interrupted(stop.signal) from None
    for m, ev in zip(g.members, evs):
        last_eval[m.number] = ev
        logs[m.number].write(s, "eval", ev)
        trials.mine[m.number].report(ev["top1"], k)
    leaving = []
    for i in pruning_order([ev["top1"] for ev in evs], [m.number for m in g.members]):
        m, ev = g.members[i], evs[i]
        if m.number in live.nonfinite and g.run.config.stop_on_nonfinite:
            outcomes[m.number] = Outcome("failed", ev, s, time.perf_counter() - t0,
                                         "non-finite loss or gradient (stop_on_nonfinite)")
        elif prune and trials.mine[m.number].should_prune():
            outcomes[m.number] = Outcome("pruned", ev, s, time.perf_counter() - t0)
        else:
            continue
        leaving.append(i)
    return leaving


def _cut(live: _Live, leaving: list[int], batch, memory_limit) -> _Live:
    """The group without the trials at ``leaving``: host state sliced, placed and compiled again."""
    g = live.group
    keep = [i for i in range(g.size) if i not in leaving]
    host_states = jax.tree.map(lambda x: x[np.asarray(keep)], parallel.get_trials(live.states, g.run.plan))
    small = dataclasses.replace(g, members=[g.members[i] for i in keep])
    pad = small.padded() - small.size
    if pad:  # the trial axis stays a multiple of the trial devices: repeat the last trial
        host_states = jax.tree.map(lambda x: np.concatenate([x, np.repeat(x[-1:], pad, 0)]), host_states)
    log.info("trials %s leave their group; %d continue", [g.members[i].number for i in leaving], small.size)
    return _place(_Live(small, live.programs, nonfinite=live.nonfinite), host_states, batch, memory_limit)


def _checkpoint_best(live: _Live, outcomes: dict, trials: Trials, workdir: Path, data) -> None:
    """Checkpoint the group's best finished trial when no finished trial of the study beats it."""
    g = live.group
    done = [(outcomes[m.number].val["top1"], i) for i, m in enumerate(g.members)
            if outcomes[m.number].status == "complete"]
    if not done:
        return
    top1, i = max(done, key=lambda d: report.best_key(d[0], g.members[d[1]].number))
    m = g.members[i]
    others = [report.best_key(t.value, t.number) for t in trials.all()
              if t.state == TrialState.COMPLETE and t.value is not None and t.number != m.number]
    if others and max(others) > report.best_key(top1, m.number):
        return
    run = dataclasses.replace(g.run, config=m.config, model_kwargs=group_mod.trial_kwargs(g.run, m))
    state = g.single_state(parallel.get_trials(live.states, g.run.plan), i)
    steps = g.run.total_steps
    meta = {**run.meta(), "epoch": steps / run.steps_per_epoch, "best_top1": top1, "best_step": steps}
    ckpt = checkpoint.Checkpointer(trial_dir(workdir, m.number), keep=1, async_save=False)
    try:
        ckpt.save(steps, state, data_state=data.get_state(), meta=meta, metrics={"val_top1": top1})
        ckpt.wait()
    finally:
        ckpt.close()
