"""The training loop: ``fit(config, workdir)``.

The classic loop of the notes: for each epoch, train over the training split, evaluate on the
validation split, print a summary, keep the best. Around it: resume from the workdir's latest
checkpoint, checkpoints every N steps and at each evaluation, SIGTERM/SIGINT -> checkpoint and a clean
exit, metrics as JSONL and TensorBoard event files, a progress bar on a terminal.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

import zoo
from train import checkpoint, data, optim, parallel, step

log = logging.getLogger("train")


class NonFiniteLossError(FloatingPointError):
    """Training stopped: the loss became NaN or Inf (config.stop_on_nonfinite)."""


# ----------------------------------------------------------------------------- building blocks

def model_kwargs(config, num_classes: int) -> dict:
    """Constructor arguments saved with checkpoints: zoo.create(config.model, **model_kwargs)."""
    kw = dict(config.model_kwargs.to_dict() if isinstance(config.model_kwargs, ml_collections.ConfigDict)
              else config.model_kwargs or {})
    if "num_classes" in kw and int(kw["num_classes"]) != num_classes:
        raise ValueError(f"model_kwargs.num_classes={kw['num_classes']} but dataset {config.data.name!r} "
                         f"has {num_classes} classes")
    kw["num_classes"] = num_classes
    return kw


def build_model(name: str, kwargs: dict, precision: str, *, axis_name: str | None = None):
    if precision not in step.PRECISIONS:
        raise ValueError(f"precision={precision!r}: allowed values are {tuple(step.PRECISIONS)}")
    conv_impl = zoo.convs.conv_impl_for(jax.devices()[0].platform)  # an execution choice: never in kwargs
    return zoo.create(name, axis_name=axis_name, dtype=step.PRECISIONS[precision], conv_impl=conv_impl, **kwargs)


def step_config(config, model_name: str, batch_stats) -> step.StepConfig:
    head = zoo.model_info(model_name).head
    stats_mask = optim.trainable_mask(batch_stats, config.transfer.freeze, head) if batch_stats else None
    return step.StepConfig(loss=config.loss, label_smoothing=config.label_smoothing,
                           ema_decay=config.optimizer.ema_decay, stats_trainable=stats_mask)


def compile_eval(model, cfg: step.StepConfig, plan: parallel.Plan, use_ema: bool):
    fn = functools.partial(step.eval_step, model=model, cfg=cfg, use_ema=use_ema)
    return parallel.compile_step(fn, plan, out_sharded=(False, True), donate_state=False)


def run_eval(eval_fn, state, pipe: data.Pipeline, plan: parallel.Plan) -> dict:
    """One pass over ``pipe``: loss, top-1, top-5 over exactly its examples, per-class accuracy and
    the confusion matrix (rows: true class, columns: predicted)."""
    sums, preds, labels = None, [], []
    for batch in pipe:
        s, per_ex = eval_fn(state, parallel.put_batch(batch, plan))
        sums = s if sums is None else jax.tree.map(lambda a, b: a + b, sums, s)
        ex = parallel.fetch(per_ex, plan)
        keep = ex["mask"] > 0
        preds.append(ex["pred"][keep])
        labels.append(ex["label"][keep])
    sums = jax.tree.map(float, parallel.unreplicate(sums, plan))
    k = pipe.num_classes
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (np.concatenate(labels), np.concatenate(preds)), 1)
    if jax.process_count() > 1:  # every process saw its own shard
        from jax.experimental import multihost_utils  # noqa: PLC0415
        confusion = np.asarray(multihost_utils.process_allgather(confusion)).sum(0)
    n = sums["count"]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.diag(confusion) / confusion.sum(1)
    return {"loss": sums["loss"] / n, "top1": sums["correct1"] / n, "top5": sums["correct5"] / n, "count": int(n),
            "per_class_top1": [None if np.isnan(v) else float(v) for v in per_class], "confusion": confusion}


class MetricsLog:
    """metrics.jsonl and TensorBoard event files in the workdir (process 0 only)."""

    def __init__(self, workdir: Path, enabled: bool):
        self.enabled = enabled
        if not enabled:
            return
        from tensorboardX import SummaryWriter  # noqa: PLC0415

        self.jsonl = open(workdir / "metrics.jsonl", "a", buffering=1)
        self.tb = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, step_: int, split: str, metrics: dict) -> None:
        if not self.enabled:
            return
        scalars = {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}
        self.jsonl.write(json.dumps({"step": step_, "split": split, **scalars}) + "\n")
        for k, v in scalars.items():
            self.tb.add_scalar(f"{split}/{k}", v, step_)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            self.tb.close()


class Progress:
    """tqdm bar on a terminal; plain log lines otherwise."""

    def __init__(self, total: int, initial: int, steps_per_epoch: int, enabled: bool):
        self.total, self.spe, self.enabled = total, steps_per_epoch, enabled
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm  # noqa: PLC0415
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)
        self.t0, self.s0 = time.perf_counter(), initial

    def update(self, step_: int, metrics: dict, images_per_s: float) -> None:
        if not self.enabled:
            return
        epoch = step_ / self.spe
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / max(step_ - self.s0, 1) * (self.total - step_)
        fields = dict(epoch=f"{epoch:.2f}", loss=f"{metrics['loss']:.4f}", acc=f"{metrics['top1']:.4f}",
                      img_s=f"{images_per_s:.0f}")
        if self.bar is not None:
            self.bar.n = step_
            self.bar.set_postfix(fields, refresh=True)
        else:
            print(f"step {step_}/{self.total} " + " ".join(f"{k} {v}" for k, v in fields.items())
                  + f" lr {metrics['learning_rate']:.3g} eta {eta:.0f}s", flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        (self.bar.write if self.bar is not None else functools.partial(print, flush=True))(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def stop_signals():
    """SIGTERM / SIGINT set a flag; the loop checkpoints and returns at the next step boundary."""
    flag = {"signal": None}
    if jax.process_count() > 1 or not _main_thread():
        yield flag
        return

    def handler(signum, _frame):
        flag["signal"] = signal.Signals(signum).name

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _main_thread() -> bool:
    import threading  # noqa: PLC0415
    return threading.current_thread() is threading.main_thread()


def _mean_metrics(pending: list[dict]) -> dict:
    """Average step metrics over steps, weighted by real examples; count non-finite steps."""
    host = [jax.tree.map(lambda x: float(np.asarray(x).reshape(-1)[0]), m) for m in pending]
    finite = [m for m in host if m["finite"]]
    n = sum(m["examples"] for m in finite)
    out = {k: sum(m[k] * m["examples"] for m in finite) / max(n, 1) for k in ("loss", "top1", "top5")}
    out.update(grad_norm=float(np.mean([m["grad_norm"] for m in finite])) if finite else float("nan"),
               learning_rate=host[-1]["learning_rate"], nonfinite_steps=len(host) - len(finite))
    if not finite:
        out.update(loss=float("nan"), top1=float("nan"), top5=float("nan"))
    return out


# ----------------------------------------------------------------------------- fit

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
    """Train ``config`` in ``workdir``; resume when the workdir already holds checkpoints of it."""
    t_start = time.perf_counter()
    workdir = Path(workdir)
    main = jax.process_index() == 0
    plan = parallel.make_plan(config.parallelism, config.num_devices)
    parallel.check_batch(config.batch_size, plan)
    parallel.check_batch(config.eval_batch_size, plan)

    # Refuse a workdir of another model BEFORE writing anything.
    train_pipe = data.from_config(config, train=True)
    eval_pipe = data.from_config(config, train=False)
    kwargs = model_kwargs(config, train_pipe.num_classes)
    if checkpoint.checkpoint_dir(workdir).is_dir():
        previous = checkpoint.Checkpointer(workdir, read_only=True).latest_meta()
        checkpoint.check_compatible(previous, model=config.model, num_classes=kwargs["num_classes"], workdir=workdir)
    if train_pipe.skipped:
        log.warning("%d unreadable images skipped", len(train_pipe.skipped))

    model = build_model(config.model, kwargs, config.precision, axis_name=parallel.AXIS)
    steps_per_epoch = train_pipe.steps_per_epoch
    total_steps = (int(config.num_train_steps) if config.num_train_steps > 0
                   else int(math.ceil(config.num_epochs * steps_per_epoch)))
    info = zoo.model_info(config.model)
    tx, _ = optim.make_optimizer(config, steps_per_epoch=steps_per_epoch, total_steps=total_steps, head=info.head)
    image_shape = train_pipe.image_shape
    state_kw = dict(input_shape=image_shape, ema=config.optimizer.ema_decay > 0, float16=config.precision == "float16")

    workdir.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint.Checkpointer(workdir, keep=config.checkpoint.keep, async_save=config.checkpoint.async_save)
    train_it = iter(train_pipe)
    best_top1, best_step, start = -1.0, None, 0
    if ckpt.steps():
        state, data_state, meta, start = ckpt.restore(step.abstract_state(model, tx, **state_kw))
        train_it.set_state(data_state)
        best_top1, best_step = meta.get("best_top1", -1.0), meta.get("best_step")
        log.info("resumed from step %d of %s", start, ckpt.directory)
    else:
        state = step.create_state(model, tx, rng=jax.random.PRNGKey(config.seed), **state_kw)
        if config.transfer.init_from:
            from train import transfer  # noqa: PLC0415
            state = transfer.init_state(state, config, model, info)
        state = jax.tree.map(np.asarray, state)

    cfg = step_config(config, config.model, state.batch_stats)
    train_fn = parallel.compile_step(functools.partial(step.train_step, model=model, tx=tx, cfg=cfg), plan)
    eval_fn = compile_eval(model, cfg, plan, use_ema=config.optimizer.ema_decay > 0)
    meta = {"model": config.model, "model_kwargs": kwargs, "num_classes": kwargs["num_classes"],
            "class_names": list(train_pipe.class_names), "preprocessing": eval_pipe.preprocessing,
            "train_preprocessing": train_pipe.preprocessing, "precision": config.precision,
            "config": json.loads(config.to_json_best_effort()), "steps_per_epoch": steps_per_epoch}

    dev_state = parallel.replicate(state, plan)
    mlog = MetricsLog(workdir, enabled=main)
    progress = Progress(total_steps, start, steps_per_epoch, enabled=main)
    eval_every = max(1, int(round(config.eval_every_epochs * steps_per_epoch)))
    last_train, last_eval, stopped = {}, {}, None

    def save(s: int, metrics: dict | None = None) -> None:
        host = parallel.unreplicate(dev_state, plan)
        ckpt.save(s, host, data_state=train_it.get_state(),
                  meta={**meta, "epoch": s / steps_per_epoch, "best_top1": best_top1, "best_step": best_step},
                  metrics=metrics)

    def evaluate_now(s: int) -> dict:
        nonlocal best_top1, best_step
        ev = run_eval(eval_fn, dev_state, eval_pipe, plan)
        if ev["top1"] > best_top1:
            best_top1, best_step = ev["top1"], s
        mlog.write(s, "eval", {k: v for k, v in ev.items() if np.ndim(v) == 0})
        progress.message(
            f"epoch {s / steps_per_epoch:6.2f} | train loss {last_train.get('loss', float('nan')):.4f} "
            f"acc {last_train.get('top1', float('nan')):.4f} | val loss {ev['loss']:.4f} acc {ev['top1']:.4f} "
            f"top5 {ev['top5']:.4f} | best {best_top1:.4f} (step {best_step}) | {time.perf_counter() - t_start:.1f}s")
        return ev

    pending, t_log, n_log = [], time.perf_counter(), 0
    s = start
    try:
        with stop_signals() as stop:
            while s < total_steps:
                dev_state, m = train_fn(dev_state, parallel.put_batch(next(train_it), plan))
                s += 1
                pending.append(m)
                n_log += config.batch_size
                at_eval = s % eval_every == 0 or s == total_steps
                if s % config.log_every_steps == 0 or at_eval or stop["signal"]:
                    last_train = _mean_metrics(pending)
                    pending = []
                    rate = n_log / (time.perf_counter() - t_log)
                    t_log, n_log = time.perf_counter(), 0
                    mlog.write(s, "train", {**last_train, "images_per_s": rate})
                    progress.update(s, last_train, rate)
                    if last_train["nonfinite_steps"]:
                        msg = (f"step {s}: {last_train['nonfinite_steps']} step(s) with a non-finite loss or "
                               f"gradient (NaN/Inf); their updates were skipped")
                        log.error(msg)
                        progress.message(msg)
                        if config.stop_on_nonfinite:
                            save(s)
                            raise NonFiniteLossError(msg + "; stopping (config.stop_on_nonfinite=True). The last "
                                                     "finite state is checkpointed.")
                if at_eval:
                    last_eval = evaluate_now(s)
                    save(s, {"val_top1": last_eval["top1"]})
                elif s % config.checkpoint.every_steps == 0:
                    save(s)
                if stop["signal"]:
                    stopped = stop["signal"]
                    save(s)
                    progress.message(f"{stopped} received: checkpoint saved at step {s}; "
                                     f"run the same command again to resume")
                    break
            if s == total_steps and not last_eval and start == total_steps:  # resumed a finished run
                last_eval = evaluate_now(s)
    finally:
        ckpt.wait()
        ckpt.close()
        progress.close()
        mlog.close()
    result = FitResult(step=s, epoch=s / steps_per_epoch, train=last_train,
                       eval={k: v for k, v in last_eval.items() if k != "confusion"}, best_top1=best_top1,
                       best_step=best_step, interrupted=stopped, seconds=time.perf_counter() - t_start)
    if main:
        with open(workdir / "result.json", "w") as f:
            json.dump(dataclasses.asdict(result), f, indent=1, default=float)
    return result
