"""What a training run reports, on process 0: metrics.jsonl and TensorBoard event files in the
workdir, a progress bar on a terminal (plain lines otherwise), and the summary line after each
evaluation. ``fit`` (``train/loop.py``) uses :class:`Reporter`; the parts are usable alone.

metrics.jsonl holds one JSON object per line: ``{"step", "split": "train" | "eval", <scalars>}``;
train lines carry loss, top1, top5, grad_norm, learning_rate, nonfinite_steps, images_per_s (the
means over the steps since the previous line), eval lines loss, top1, top5, count. A run resumed from
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
    count the non-finite steps (left out of the means; all non-finite: NaN)."""
    host = host_metrics(pending)
    finite = [m for m in host if m["finite"]]
    n = sum(m["examples"] for m in finite)
    out = {k: sum(m[k] * m["examples"] for m in finite) / max(n, 1) for k in ("loss", "top1", "top5")}
    out.update(grad_norm=float(np.mean([m["grad_norm"] for m in finite])) if finite else float("nan"),
               learning_rate=host[-1]["learning_rate"], nonfinite_steps=len(host) - len(finite))
    if not finite:
        out.update(loss=float("nan"), top1=float("nan"), top5=float("nan"))
    return out


def epoch_summary(step: int, steps_per_epoch: int, train: dict, ev: dict, best_top1: float, best_step: int | None,
                  seconds: float) -> str:
    """The line printed after each evaluation."""
    nan = float("nan")
    return (f"epoch {step / steps_per_epoch:6.2f} | train loss {train.get('loss', nan):.4f} "
            f"acc {train.get('top1', nan):.4f} | val loss {ev['loss']:.4f} acc {ev['top1']:.4f} "
            f"top5 {ev['top5']:.4f} | best {best_top1:.4f} (step {best_step}) | {seconds:.1f}s")


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

        if start > 0:
            set_aside_after(workdir / "metrics.jsonl", start)
        self.jsonl = open(workdir / "metrics.jsonl", "a", buffering=1)
        self.tb = SummaryWriter(str(workdir / "tensorboard"), purge_step=start + 1 if start > 0 else None)

    def write(self, step: int, split: str, metrics: dict) -> None:
        if not self.enabled:
            return
        scalars = {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}
        self.jsonl.write(json.dumps({"step": step, "split": split, **scalars}) + "\n")
        for k, v in scalars.items():
            self.tb.add_scalar(f"{split}/{k}", v, step)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            self.tb.close()


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
        log.info("%s: %d rows after step %d (the steps this resumed run repeats) moved to %s", path.name,
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
    between two train reports (``batch_size``: the global batch)."""

    def __init__(self, workdir: Path, *, total_steps: int, start: int, steps_per_epoch: int, batch_size: int,
                 t_start: float, enabled: bool):
        self.log = MetricsLog(workdir, enabled, start)
        self.progress = Progress(total_steps, start, steps_per_epoch, enabled)
        self.steps_per_epoch, self.batch_size, self.t_start = steps_per_epoch, batch_size, t_start
        self.t_last = time.perf_counter()

    def train(self, step: int, pending: list[dict]) -> dict:
        """Report the mean of the step metrics ``pending`` (the steps since the last report); returns it."""
        metrics = mean_metrics(pending)
        now = time.perf_counter()
        rate = len(pending) * self.batch_size / (now - self.t_last)
        self.t_last = now
        self.log.write(step, "train", {**metrics, "images_per_s": rate})
        self.progress.update(step, metrics, rate)
        return metrics

    def restart_clock(self) -> None:
        """Images/s and the ETA count from now (after the compilation)."""
        self.t_last = self.progress.t0 = time.perf_counter()

    def tick(self, step: int, pending: list[dict]) -> None:
        """Between train reports: refresh the progress display when due (the mean of ``pending``,
        the steps since the last report; the metrics log is left alone)."""
        if pending and self.progress.due():
            self.progress.update(step, mean_metrics(pending),
                                 len(pending) * self.batch_size / (time.perf_counter() - self.t_last))

    def eval(self, step: int, ev: dict, train: dict, best_top1: float, best_step: int | None) -> None:
        self.log.write(step, "eval", {k: v for k, v in ev.items() if np.ndim(v) == 0})
        self.progress.message(epoch_summary(step, self.steps_per_epoch, train, ev, best_top1, best_step,
                                            time.perf_counter() - self.t_start))

    def message(self, text: str) -> None:
        self.progress.message(text)

    def close(self) -> None:
        self.progress.close()
        self.log.close()
