"""What a training run reports, on process 0: metrics.jsonl and TensorBoard event files in the
workdir, a progress bar on a terminal (plain lines otherwise), and the summary line after each
evaluation. ``fit`` (``train/loop.py``) uses :class:`Reporter`; the parts are usable alone.

metrics.jsonl holds one JSON object per line: ``{"step", "split": "train" | "eval", <scalars>}``;
train lines carry loss, top1, top5, grad_norm, learning_rate, nonfinite_steps, images_per_s (the
means over the steps since the previous line; images/s over the steps timed since then, the compiling
step and evaluations left out), eval lines loss, top1, top5, count. A value that is not finite (every
step of a window skipped, an evaluation of NaN logits) is written ``null`` (strict JSON) and left out of
TensorBoard; ``nonfinite_steps`` counts the skipped steps. A run resumed from
step S continues one timeline: rows of steps after S (written before a crash, after the checkpoint it
resumed from) move to ``metrics.abandoned.jsonl``, and TensorBoard purges its events after S
(``purge_step``).
"""
from __future__ import annotations

import functools
import json
import logging
import sys
import time
from pathlib import Path

import jax
import numpy as np

from train import logs
from zoo.files import written_atomically

log = logging.getLogger("train")


def host_metrics(pending: list[dict]) -> list[dict]:
    """Step metrics as Python floats (device arrays read back; floats as they are): JSON-ready."""
    return [jax.tree.map(lambda x: float(np.asarray(x).reshape(-1)[0]), m) for m in pending]


def mean_metrics(pending: list[dict]) -> dict:
    """Average step metrics (``train.step.train_step``'s) over steps, weighted by real examples;
    count the non-finite steps (left out of the means; all non-finite: NaN). Under float16 loss
    scaling, steps skipped because the scaled gradients overflowed are counted apart
    (``overflow_steps``: routine while the scale calibrates; their finite loss is in the means) and
    ``loss_scale`` is the last step's."""
    host = host_metrics(pending)
    finite = [m for m in host if m["finite"]]
    overflow = [m for m in host if not m["finite"] and m.get("overflow")]
    scored = finite + overflow   # a finite loss and accuracy
    n = sum(m["examples"] for m in scored)
    out = {k: sum(m[k] * m["examples"] for m in scored) / max(n, 1) for k in ("loss", "top1", "top5")}
    out.update(grad_norm=float(np.mean([m["grad_norm"] for m in finite])) if finite else float("nan"),
               learning_rate=host[-1]["learning_rate"], nonfinite_steps=len(host) - len(scored))
    if not scored:
        out.update(loss=float("nan"), top1=float("nan"), top5=float("nan"))
    if "loss_scale" in host[-1]:
        out.update(overflow_steps=len(overflow), loss_scale=host[-1]["loss_scale"])
    return out


def epoch_summary(step: int, steps_per_epoch: int, train: dict, ev: dict, best_top1: float, best_step: int | None,
                  seconds: float, *, eval_name: str = "val", ema: bool = False, num_classes: int | None = None) -> str:
    """The line printed after each evaluation: ``train`` the mean over the ``train['steps']`` steps
    since the previous evaluation, ``ev`` the evaluation of the ``eval_name`` split (of the run's EMA
    weights with ``ema``)."""
    steps = f" ({train['steps']} steps)" if "steps" in train else ""
    # no train steps since the last evaluation (a resumed run evaluating first): no train figures
    trained = f"train{steps} loss {train['loss']:.4f} acc {train['top1']:.4f} | " if train else ""
    return (f"epoch {step / steps_per_epoch:6.2f} | {trained}"
            f"{eval_name} ({ev['count']:,} images{', EMA' if ema else ''}) "
            f"loss {ev['loss']:.4f} "
            f"acc {ev['top1']:.4f} {top5_text(ev['top5'], num_classes)} | best {best_top1:.4f} (step {best_step}) | "
            f"{seconds:.1f}s")


def top5_text(top5: float, num_classes: int | None, label: str = "top5") -> str:
    """``top5 0.9970``, or ``top5 n/a (3 classes)`` where every label is among the top 5 whatever the
    model (five classes or fewer: the figure is 1 by construction)."""
    if num_classes is not None and num_classes <= 5:
        return f"{label} n/a ({num_classes} classes)"
    return f"{label} {top5:.4f}"


def run_summary(run) -> str:
    """The line that opens a run (``run``: a ``train.setup.Run``): model, data, length, devices."""
    train, ev, plan = run.train_pipe, run.eval_pipe, run.plan
    kind = plan.devices[0].platform
    return (f"{run.config.model} on {train.name}: {train.num_examples:,} training images ({train.split}), "
            f"{ev.num_examples:,} eval images ({ev.split}), {train.num_classes} classes | {run.total_steps:,} steps of "
            f"batch {train.batch_size} ({run.total_steps / run.steps_per_epoch:.3g} epochs) on {plan.num_devices} "
            f"{kind} device{'s' if plan.num_devices > 1 else ''} ({plan.parallelism})")


def nonfinite_message(step: int, count: int) -> str:
    return (f"step {step}: {count} step(s) with a non-finite loss or gradient (NaN/Inf); "
            f"their updates were skipped")


class MetricsLog:
    """metrics.jsonl and TensorBoard event files in the workdir (process 0 only), continuing from
    step ``start`` (a resumed run: later rows are set aside, :func:`set_aside_after`)."""

    def __init__(self, workdir: Path, enabled: bool, start: int = 0):
        self.enabled = enabled
        if not enabled:
            return
        from tensorboardX import SummaryWriter  # noqa: PLC0415

        path, tb = workdir / "metrics.jsonl", workdir / "tensorboard"
        end_last_line(path)
        # a fresh run (start 0) sets aside the rows of a run whose checkpoints are gone: one timeline
        set_aside_after(path, start)
        earlier = start > 0 or (tb.is_dir() and any(tb.iterdir()))   # TensorBoard hides their events after it
        self.jsonl = open(path, "a", buffering=1)
        # flushed every second (tensorboardX's default, 2 minutes, let a kill -9 lose rows metrics.jsonl kept)
        self.tb = SummaryWriter(str(tb), purge_step=start + 1 if earlier else None, flush_secs=1)

    def write(self, step: int, split: str, metrics: dict) -> None:
        """One row: metrics.jsonl (line-buffered) and TensorBoard (on disk within a second)."""
        if not self.enabled:
            return
        scalars = {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}
        row = {k: v if np.isfinite(v) else None for k, v in scalars.items()}   # NaN is not JSON
        self.jsonl.write(json.dumps({"step": step, "split": split, **row}, allow_nan=False) + "\n")
        for k, v in row.items():
            if v is not None:
                self.tb.add_scalar(f"{split}/{k}", v, step)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            self.tb.close()


def end_last_line(path: Path) -> None:
    """End ``path``'s last line when it is unfinished (a short write on a full disk, a kill): the next
    row appended was glued onto it, unreadable to any JSON-lines reader."""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb+") as f:
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                f.write(b"\n")


def set_aside_after(path: Path, step: int) -> int:
    """Move the rows of ``path`` (metrics.jsonl) for steps after ``step`` to ``metrics.abandoned.jsonl``
    beside it (appended: never lost): a run resumed from checkpoint ``step`` repeats those steps. The
    rows are written there before ``path`` is replaced whole. Returns how many moved."""
    if not path.is_file():
        return 0
    keep, gone = [], []
    for line in path.read_text().splitlines(keepends=True):
        try:
            later = int(json.loads(line)["step"]) > step
        except (ValueError, KeyError, TypeError):
            later = False   # not ours to judge: kept
        (gone if later else keep).append(line)
    if gone:
        aside = path.with_name("metrics.abandoned.jsonl")
        with open(aside, "a") as f:
            f.writelines(gone)
        with written_atomically(path) as tmp:
            Path(tmp).write_text("".join(keep))
        log.info("%s: %d rows after step %d (the steps this run repeats) moved to %s", path.name,
                 len(gone), step, aside.name)
    return len(gone)


class Progress:
    """tqdm bar on a terminal, refreshed at least every second; plain lines otherwise, at every train
    report and at least every ``PLAIN_EVERY_S`` seconds."""

    TERMINAL_EVERY_S = 1.0
    PLAIN_EVERY_S = 10.0

    def __init__(self, total: int, initial: int, steps_per_epoch: int, enabled: bool):
        self.total, self.spe, self.enabled = total, steps_per_epoch, enabled
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm  # noqa: PLC0415
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)
        self.t0, self.s0 = time.perf_counter(), initial
        self.t_shown = self.t_logged = self.t0
        self.every_s = self.TERMINAL_EVERY_S if self.bar is not None else self.PLAIN_EVERY_S

    def due(self) -> bool:
        """Whether the display is due for a refresh (between train reports)."""
        return self.enabled and time.perf_counter() - self.t_shown >= self.every_s

    def update(self, step: int, metrics: dict, images_per_s: float) -> None:
        if not self.enabled:
            return
        self.t_shown = time.perf_counter()
        epoch = step / self.spe
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / max(step - self.s0, 1) * (self.total - step)
        fields = dict(epoch=f"{epoch:.2f}", loss=f"{metrics['loss']:.4f}", acc=f"{metrics['top1']:.4f}",
                      img_s=f"{images_per_s:.0f}")
        line = (f"step {step}/{self.total} " + " ".join(f"{k} {v}" for k, v in fields.items())
                + f" lr {metrics['learning_rate']:.3g} eta {eta:.0f}s")
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix(fields, refresh=True)
        else:
            print(line, flush=True)
        if self.bar is None or self.t_shown - self.t_logged >= self.PLAIN_EVERY_S:   # the bar: every 10 s
            self.t_logged = self.t_shown
            logs.to_log_file(line)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        (self.bar.write if self.bar is not None else functools.partial(print, flush=True))(text)
        logs.to_log_file(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Reporter:
    """The reporting of one ``fit``: metrics log, progress and summary lines, and the images/s
    between two train reports (``batch_size``: the global batch), over the steps timed since: from
    ``start`` (a resumed run's restored steps are not), less the compiling step, evaluations left out.
    ``eval_name`` names the evaluated split in the summary lines (``ema``: the run evaluates its EMA),
    ``num_classes`` says when top-5 means nothing."""

    def __init__(self, workdir: Path, *, total_steps: int, start: int, steps_per_epoch: int, batch_size: int,
                 t_start: float, enabled: bool, eval_name: str = "val", ema: bool = False,
                 num_classes: int | None = None):
        self.log = MetricsLog(workdir, enabled, start)
        self.progress = Progress(total_steps, start, steps_per_epoch, enabled)
        self.steps_per_epoch, self.batch_size, self.t_start = steps_per_epoch, batch_size, t_start
        self.eval_name, self.ema, self.num_classes = eval_name, ema, num_classes
        self.t_last, self.step_last = time.perf_counter(), start   # the clock, and the step it started at
        self.since_eval: list[dict] = []   # the train steps' metrics since the last evaluation (host floats)
        self.carried: dict = {}   # see carry

    def _rate(self, step: int) -> float:
        return (step - self.step_last) * self.batch_size / max(time.perf_counter() - self.t_last, 1e-9)

    def train(self, step: int, pending: list[dict]) -> dict:
        """Report the mean of the step metrics ``pending`` (the steps since the last report); returns it."""
        host = host_metrics(pending)
        self.since_eval += host
        metrics = mean_metrics(host)
        rate = self._rate(step)
        self.t_last, self.step_last = time.perf_counter(), step
        self.log.write(step, "train", {**metrics, "images_per_s": rate})
        self.progress.update(step, metrics, rate)
        return metrics

    def restart_clock(self, untimed_steps: int = 0) -> None:
        """Images/s and the ETA count from now; ``untimed_steps`` steps ran since the clock started
        (the compiling one) and are left out."""
        self.t_last = self.progress.t0 = time.perf_counter()
        self.step_last += untimed_steps
        self.progress.s0 += untimed_steps

    def tick(self, step: int, pending: list[dict]) -> None:
        """Between train reports: refresh the progress display when due (the mean of ``pending``,
        the steps since the last report; the metrics log is left alone)."""
        if pending and self.progress.due():
            self.progress.update(step, mean_metrics(pending), self._rate(step))

    def eval(self, step: int, ev: dict, best_top1: float, best_step: int | None) -> dict:
        """Report an evaluation and the summary line; returns the train metrics it gives (the mean over
        the steps since the previous evaluation, ``steps`` of them: after a resume, those since it).
        The clock restarts after it: images/s counts training only."""
        train, self.carried = self.train_since_eval() or self.carried, {}
        self.since_eval = []
        self.log.write(step, "eval", {k: v for k, v in ev.items() if np.ndim(v) == 0})
        self.progress.message(epoch_summary(step, self.steps_per_epoch, train, ev, best_top1, best_step,
                                            time.perf_counter() - self.t_start, eval_name=self.eval_name,
                                            ema=self.ema, num_classes=self.num_classes))
        self.t_last, self.step_last = time.perf_counter(), step
        return train

    def train_since_eval(self) -> dict:
        """The mean of the train steps since the last evaluation, with ``steps`` ({} when none)."""
        return {**mean_metrics(self.since_eval), "steps": len(self.since_eval)} if self.since_eval else {}

    def carry(self, train: dict) -> None:
        """``train``: :meth:`train_since_eval` of the process stopped during an evaluation, which the
        resumed run's evaluation of that step then reports as its own (no steps ran since)."""
        self.carried = dict(train or {})

    def message(self, text: str) -> None:
        self.progress.message(text)

    def close(self) -> None:
        self.progress.close()
        self.log.close()
