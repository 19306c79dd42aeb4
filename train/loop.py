"""The training loop: ``fit(config, workdir)``.

The classic loop of the notes, in the shape of the Flax ImageNet example's ``train_and_evaluate``:
build the run (``train/setup.py``), start from the workdir's latest checkpoint or a fresh state, then
for each step train on the next batch; every ``log_every_steps`` report the mean train metrics;
every ``eval_every_epochs`` evaluate on the validation split (``train/evaluation.py``), print a
summary (``train/reporting.py``), keep the best and checkpoint; checkpoint every
``checkpoint.every_steps`` too. SIGTERM/SIGINT -> checkpoint and a clean exit (``train/interrupts.py``).
A non-finite step is skipped by the step itself and reported here; ``stop_on_nonfinite`` stops the
run (checkpointed). The process that trains holds the workdir's lock (``train/lock.py``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import traverse_util

import zoo.compiling
from train import checkpoint, evaluation, interrupts, lock, parallel, reporting, setup, step, transfer
from train.data import workers
from zoo.files import written_atomically

log = logging.getLogger("train")


class NonFiniteLossError(FloatingPointError):
    """Training stopped: the loss became NaN or Inf (config.stop_on_nonfinite)."""


@dataclasses.dataclass
class FitResult:
    step: int
    epoch: float
    train: dict
    eval: dict
    best_top1: float
    best_step: int | None
    interrupted: str | None
    seconds: float


def fit(config: ml_collections.ConfigDict, workdir: str | Path) -> FitResult:
    """Train ``config`` in ``workdir``; resume when the workdir already holds checkpoints of it.

    A second process training in the same workdir is refused at once (``lock.WorkdirBusyError``).
    SIGINT / SIGTERM during start-up raise ``interrupts.Interrupted`` (nothing saved); during
    training they checkpoint and return (``FitResult.interrupted``). A checkpoint that cannot be
    written raises ``checkpoint.CheckpointWriteError``."""
    t_start = time.perf_counter()
    workdir = Path(workdir)
    with interrupts.stop_signals() as stop, _workdir_lock(workdir):
        run = setup.build(config, workdir=workdir)  # refuses another model's workdir before anything is written
        lock.check_outputs(workdir)
        log.info("%s", reporting.run_summary(run))
        stop.check()
        ckpt = checkpoint.Checkpointer(workdir, keep=config.checkpoint.keep, async_save=config.checkpoint.async_save)
        try:
            _refuse_a_stray_result(workdir, ckpt)
            train_fn = run.compile_train()
            # the train step compiles while the state is made or restored (a finished run needs no step)
            ahead = run.compile_train_ahead(train_fn) if max(ckpt.steps(), default=0) < run.total_steps else None
            loop = _start(run, ckpt)
            if loop.start >= run.total_steps and (done := _already_trained(loop, run, workdir)) is not None:
                return done
            stop.check()
            report = reporting.Reporter(workdir, total_steps=run.total_steps, start=loop.step,
                                        steps_per_epoch=run.steps_per_epoch, batch_size=config.batch_size,
                                        t_start=t_start, enabled=jax.process_index() == 0,
                                        eval_name=run.eval_pipe.split, num_classes=run.train_pipe.num_classes,
                                        ema=run.config.optimizer.ema_decay > 0)
            try:
                train_step = _announced(train_fn, "train step", report, stop, restart_clock=True, ahead=ahead)
                eval_step = _announced(evaluation.compile_eval(run.model, run.step_config, run.plan), "eval step",
                                       report)
                _train(run, loop, ckpt, report, stop, train_step, eval_step)
            finally:
                report.close()
                loop.data.close()  # its prefetch threads end now, even while an exception keeps it referenced
        finally:
            ckpt.close()
    return _finish(loop, run, workdir, t_start)


def _train(run: setup.Run, loop: _Loop, ckpt: checkpoint.Checkpointer, report: reporting.Reporter,
           stop: interrupts.Stop, train_step, eval_step) -> None:
    """The loop: a step per batch; train reports, evaluations and checkpoints when due."""
    watch = workers.InputWatch(report.message)   # a stalled data worker: said, not a frozen display
    try:
        if loop.eval_due or loop.step == loop.start == run.total_steps:
            # stopped during the evaluation of this step, or a finished run resumed: evaluate it first
            report.carry(loop.eval_train)
            if not _evaluate(run, loop, eval_step, report, stop, watch):
                _interrupted(run, loop, ckpt, report, stop.signal)
                return
            if loop.eval_due:
                ckpt.record_top1(loop.step, loop.last_eval["top1"])   # ranks its checkpoint for 'best'
                loop.eval_due, loop.eval_train = False, {}
        _steps(run, loop, ckpt, report, stop, train_step, eval_step, watch)
    finally:
        watch.close()


def _steps(run: setup.Run, loop: _Loop, ckpt: checkpoint.Checkpointer, report: reporting.Reporter,
           stop: interrupts.Stop, train_step, eval_step, watch: workers.InputWatch) -> None:
    """The steps from ``loop.step`` to the end, or to a signal (checkpointed)."""
    config = run.config
    eval_every = max(1, int(round(config.eval_every_epochs * run.steps_per_epoch)))
    while loop.step < run.total_steps:
        loop.state, metrics = train_step(loop.state, parallel.put_batch(watch.next(loop.data), run.plan))
        loop.step += 1
        loop.pending.append(metrics)
        if parallel.preempted(loop.step):   # several processes: SIGTERM to any of them, at one agreed step
            stop.signal = stop.signal or "SIGTERM"
        at_eval = loop.step % eval_every == 0 or loop.step == run.total_steps
        if loop.step % config.log_every_steps == 0 or at_eval:   # (a signal: the steps since go into the checkpoint)
            _report_train(run, loop, ckpt, report)  # NonFiniteLossError when stop_on_nonfinite
        else:
            report.tick(loop.step, loop.pending)  # the progress display, at least every second
        if at_eval and not _evaluate(run, loop, eval_step, report, stop, watch):
            loop.eval_due = True   # a signal during the evaluation: saved unevaluated, evaluated on resume
            loop.eval_train = report.train_since_eval()   # with the train figures it would have reported
        elif at_eval:
            _save(run, loop, ckpt, {"val_top1": loop.last_eval["top1"]})
        elif loop.step % config.checkpoint.every_steps == 0:
            _save(run, loop, ckpt)
        if stop.signal:
            _interrupted(run, loop, ckpt, report, stop.signal)
            return


# ----------------------------------------------------------------------------- the steps of fit

@dataclasses.dataclass
class _Loop:
    """The state of the loop, in one place."""

    state: Any                     # the train state on the plan's devices
    data: Any                      # the train iterator (grain: get_state / set_state)
    step: int                      # train steps done
    start: int                     # the step this fit started at (resumed: the checkpoint's)
    meta: dict                     # stored with every checkpoint (setup.Run.meta)
    best_top1: float = -1.0
    best_step: int | None = None
    pending: list = dataclasses.field(default_factory=list)   # step metrics since the last train report
    last_train: dict = dataclasses.field(default_factory=dict)
    last_eval: dict = dataclasses.field(default_factory=dict)
    interrupted: str | None = None  # the signal's name
    eval_due: bool = False         # the checkpoint at ``step`` was saved before its evaluation was done
    eval_train: dict = dataclasses.field(default_factory=dict)   # then: the train figures it was to report


def _start(run: setup.Run, ckpt: checkpoint.Checkpointer) -> _Loop:
    """Resume from the latest readable checkpoint, or start a fresh state (from
    ``transfer.init_from`` when set: never on resume, a resumed run continues from its own)."""
    data_it = iter(run.train_pipe)
    if ckpt.steps():
        stored = (ckpt.latest_meta() or {}).get("config")
        transfer.check_resume(run.config, stored, ckpt.workdir)
        state, data_state, meta, start = ckpt.restore(run.abstract_state())
        data_it.set_state(data_state)   # another pipeline (batch size, dataset, seed, ...): refused here
        _say_changed_fields(run.config, stored, start)   # what is taken, then
        log.info("resumed from step %d of %s", start, ckpt.directory)
        best_top1, best_step = meta.get("best_top1", -1.0), meta.get("best_step")
        pending = list(meta.get("pending_metrics") or [])   # steps after its last train report
        eval_due, eval_train = bool(meta.get("eval_due")), dict(meta.get("eval_train") or {})
    else:
        if run.config.transfer.init_from:
            transfer.check_source(run.config.transfer.init_from, run.info.name)  # before the compile, not after
        log.info("compiling the initial state...")
        t = time.perf_counter()
        state, start, best_top1, best_step, pending = run.fresh_state(), 0, -1.0, None, []
        eval_due, eval_train = False, {}
        log.info("compiling the initial state: done in %.1fs", time.perf_counter() - t)
        if run.config.transfer.init_from:
            state = transfer.init_state(state, run.config, run.model, run.info)
    return _Loop(parallel.replicate(state, run.plan), data_it, start, start, run.meta(), best_top1, best_step,
                 pending, eval_due=eval_due, eval_train=eval_train)


def _say_changed_fields(config: ml_collections.ConfigDict, stored: dict | None, start: int) -> None:
    """A resumed run whose config differs from its checkpoint's (a learning rate, a schedule, a longer
    run: taken, as asked) says so, field by field: it went on without a word, and the checkpoints'
    meta then gave the new values for the whole run."""
    if not stored:
        return
    was = traverse_util.flatten_dict(stored, sep=".")
    now = traverse_util.flatten_dict(json.loads(config.to_json_best_effort()), sep=".")
    changed = [f"{k} {was.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(was) | set(now))
               if was.get(k) != now.get(k) and k != "transfer.init_from"]   # (init_from: check_resume's warning)
    if changed:
        log.warning("resuming from step %d with a config that differs from the checkpoint's: %s (steps %d on use "
                    "the new values; each checkpoint's meta records the config it was saved under)", start,
                    "; ".join(changed), start + 1)


def _refuse_a_stray_result(workdir: Path, ckpt: checkpoint.Checkpointer) -> None:
    """A fresh run (no checkpoint) where a result.json is: a user's file, or the result of a run whose
    checkpoints were removed; it was replaced without a word at the end of the run."""
    if not ckpt.steps() and (workdir / "result.json").exists():
        raise checkpoint.WorkdirMismatchError(
            f"{workdir / 'result.json'} is not the result of a run in this workdir (it holds no checkpoint); "
            f"nothing was changed: move it away, or use another --workdir")


def _already_trained(loop: _Loop, run: setup.Run, workdir: Path) -> FitResult | None:
    """A workdir at or past the run's length: past it is refused (nothing can be untrained); at it, the
    run is complete and its result.json is the result (nothing rewritten, nothing compiled). None: a
    complete run without its result (killed before writing it): evaluate it again to write one."""
    if loop.start > run.total_steps:
        loop.data.close()
        raise checkpoint.WorkdirMismatchError(
            f"num_epochs / num_train_steps: {workdir} is already at step {loop.start} (epoch "
            f"{loop.start / run.steps_per_epoch:.3g}), past the {run.total_steps:,} steps asked for; nothing was "
            f"changed: ask for more steps to continue it, or use another --workdir")
    try:
        result = FitResult(**json.loads((workdir / "result.json").read_text()))
    except (OSError, ValueError, TypeError):
        result = None
    if result is None or result.step != loop.start or result.interrupted:   # (stopped in its last evaluation)
        return None
    loop.data.close()
    log.info("step %d: this run is complete; nothing to train (result.json kept; python -m train.evaluate "
             "--workdir %s evaluates it again)", loop.start, workdir)
    return result


def _report_train(run: setup.Run, loop: _Loop, ckpt: checkpoint.Checkpointer, report: reporting.Reporter) -> None:
    loop.last_train = report.train(loop.step, loop.pending)
    loop.pending = []
    count = loop.last_train["nonfinite_steps"]
    if not count:
        return
    msg = reporting.nonfinite_message(loop.step, count)
    report.message(msg)
    if run.config.stop_on_nonfinite:
        _save(run, loop, ckpt)
        raise NonFiniteLossError(msg + "; stopping (config.stop_on_nonfinite=True). The last finite state is "
                                       "checkpointed.")


def _evaluate(run: setup.Run, loop: _Loop, eval_step, report: reporting.Reporter, stop: interrupts.Stop,
              watch: workers.InputWatch) -> bool:
    """Evaluate the current state (its EMA when the run keeps one) on the eval split; keep the best.
    False: a signal arrived during it and it was abandoned (one process: a scheduler's grace period is
    shorter than an evaluation of ImageNet's size on a CPU; several processes finish it together)."""
    abandon = (lambda: stop.signal is not None) if jax.process_count() == 1 else None
    try:
        ev = evaluation.run_eval(eval_step, step.eval_variables(loop.state), run.eval_pipe, run.plan, stop=abandon,
                                 watch=watch)
    except evaluation.EvalAbandoned as e:
        report.message(f"{stop.signal} received during the evaluation of step {loop.step}: {e}; it runs again on "
                       f"resume")
        return False
    if ev["top1"] > loop.best_top1:
        loop.best_top1, loop.best_step = ev["top1"], loop.step
    loop.last_eval = ev
    if not np.isfinite(ev["loss"]):
        report.message(f"step {loop.step}: the evaluation loss is not finite (NaN/Inf logits: top-1 counts their "
                       f"argmax, {ev['top1']:.4f}); the weights have diverged")
    loop.last_train = report.eval(loop.step, ev, loop.best_top1, loop.best_step) or loop.last_train
    return True


def _save(run: setup.Run, loop: _Loop, ckpt: checkpoint.Checkpointer, metrics: dict | None = None) -> None:
    meta = {**loop.meta, "epoch": loop.step / run.steps_per_epoch, "best_top1": loop.best_top1,
            "best_step": loop.best_step,   # and the steps not yet reported: a resumed run's next row is the same
            "pending_metrics": reporting.host_metrics(loop.pending), "eval_due": loop.eval_due,
            "eval_train": loop.eval_train if loop.eval_due else {}}
    state = parallel.unreplicate(loop.state, run.plan)
    if not ckpt.save(loop.step, state, data_state=loop.data.get_state(), meta=meta, metrics=metrics):
        # the checkpointer refuses a non-finite state: finite losses and gradients, but an update overflowed
        last = max(ckpt.steps(), default=None)
        raise NonFiniteLossError(
            f"step {loop.step}: the train state has non-finite values although the loss and gradients were finite "
            f"(an update overflowed: is the learning rate, transfer.backbone_lr_mult or another optimizer setting "
            f"too large?); nothing was written at this step, "
            + (f"the last checkpoint is step {last}" if last is not None else "and no checkpoint was written before"))


def _interrupted(run: setup.Run, loop: _Loop, ckpt: checkpoint.Checkpointer, report: reporting.Reporter,
                 signal_name: str) -> None:
    loop.interrupted = signal_name
    _save(run, loop, ckpt)
    ckpt.wait()  # committed before we say so (a second signal from now on loses nothing)
    report.message(f"{signal_name} received: checkpoint saved at step {loop.step}; "
                   f"run the same command again to resume")


def _finish(loop: _Loop, run: setup.Run, workdir: Path, t_start: float) -> FitResult:
    """The result, also written to ``WORKDIR/result.json`` (process 0)."""
    result = FitResult(step=loop.step, epoch=loop.step / run.steps_per_epoch, train=loop.last_train,
                       eval={**{k: v for k, v in loop.last_eval.items() if k != "confusion"},   # and what it was of
                             **({"split": run.eval_pipe.split, "ema": run.config.optimizer.ema_decay > 0}
                                if loop.last_eval else {})},
                       best_top1=loop.best_top1, best_step=loop.best_step, interrupted=loop.interrupted,
                       seconds=time.perf_counter() - t_start)
    if jax.process_index() == 0:
        with written_atomically(workdir / "result.json") as tmp:
            Path(tmp).write_text(json.dumps(dataclasses.asdict(result), indent=1, default=float))
    return result


def _announced(fn, what: str, report: reporting.Reporter, stop: interrupts.Stop | None = None, *,
               restart_clock: bool = False, ahead: zoo.compiling.Ahead | None = None):
    """``fn`` (a compiled step), whose first call, which compiles it, is announced with its duration;
    a signal received meanwhile still belongs to start-up (``stop.check``: nothing saved). With
    ``restart_clock``, images/s and the ETA count from the end of the compilation. ``ahead``: its
    compile, begun beside the initial state; the first call waits for it (the line gives both times)."""
    first = [True]

    def call(*args):
        if not first[0]:
            return fn(*args)
        first[0] = False
        report.message(f"compiling the {what}...")
        t = time.perf_counter()
        compiled_in = ahead.wait() if ahead is not None else None
        out = fn(*args)
        took = time.perf_counter() - t
        began = f" ({compiled_in:.1f}s in all, begun beside the initial state)" if compiled_in else ""
        report.message(f"compiling the {what}: done in {took:.1f}s{began}")
        if restart_clock:
            jax.block_until_ready(out)
            report.restart_clock(untimed_steps=1)
        if stop is not None:
            stop.check()
        return out

    return call


@contextlib.contextmanager
def _workdir_lock(workdir: Path):
    """The workdir's lock, held by process 0 (the one that writes checkpoints)."""
    if jax.process_index() != 0:
        yield
        return
    with lock.WorkdirLock(workdir):
        yield
