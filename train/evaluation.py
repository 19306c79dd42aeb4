"""Evaluation: the compiled eval step run over a pipeline, and checkpoints restored or evaluated
without the config file (it is inside the checkpoint). (``train/evaluate.py`` is the command-line
entry point; this module holds the library functions.)

    model, variables = train.restore("runs/lenet5")          # research code
    logits = model.apply(variables, x, train=False)
    model, variables, meta, step = train.load("runs/lenet5")  # the same, with the checkpoint's meta: one read
    report = train.evaluate("runs/lenet5")                     # loss, top-1/5, per-class, confusion PNG

    python -m train.evaluate --workdir runs/lenet5 [--checkpoint best|latest|STEP]

A checkpoint is verified when read (``train/checkpoint.py``): one that does not read as written is
reported and the previous one used. ``fit`` evaluates with the same two functions: :func:`compile_eval` and :func:`run_eval`.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from train import checkpoint, data, logs, parallel, reporting, setup, step
from zoo.files import check_folder_to_write, same_file, save_figure, written_atomically

log = logging.getLogger("train")


# ----------------------------------------------------------------------------- the eval step over a pipeline

def compile_eval(model, cfg: step.StepConfig, plan: parallel.Plan):
    """The eval step for the plan: ``(device variables, device batch) -> (sums, per-example outputs)``
    (``train.step.eval_step``; variables from ``train.step.eval_variables``)."""
    fn = functools.partial(step.eval_step, model=model, cfg=cfg)
    return parallel.compile_step(fn, plan, out_sharded=(False, True), donate_state=False)


class EvalAbandoned(Exception):
    """``run_eval``'s ``stop()`` said to stop before the pass was over (a signal during a training run's
    evaluation: the run checkpoints at once instead of after the whole split)."""


def run_eval(eval_fn, variables, pipe: data.Pipeline, plan: parallel.Plan, *, stop=None, watch=None) -> dict:
    """One pass over ``pipe`` with ``variables`` on the plan's devices: loss, top-1, top-5 over
    exactly its examples, per-class accuracy and the confusion matrix (rows: true class, columns:
    predicted). ``stop``: asked before each batch; True abandons the pass (:class:`EvalAbandoned`).
    ``watch``: a ``train.data.workers.InputWatch`` the batches are awaited through (a stalled worker said)."""
    sums, preds, labels = None, [], []
    batches = iter(pipe)
    for i, batch in enumerate(batches if watch is None else iter(lambda: watch.next(batches, None), None)):
        if stop is not None and stop():
            batches.close()   # its workers end now
            raise EvalAbandoned(f"evaluation abandoned after {i} of {pipe.steps_per_epoch} batches")
        s, per_ex = eval_fn(variables, parallel.put_batch(batch, plan))
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


# ----------------------------------------------------------------------------- checkpoints

class Loaded(NamedTuple):
    model: Any        # the zoo model the checkpoint describes (train.setup.create_model, no axis name)
    variables: dict   # {'params', 'batch_stats'}: model.apply(variables, x, train=False)
    meta: dict        # the checkpoint's self-description (config, model, class names, preprocessing, ...)
    step: int


def kept_ema(meta: dict) -> bool:
    """Whether the run of a checkpoint's ``meta`` kept an EMA (``optimizer.ema_decay`` > 0), which its
    evaluation, :func:`load` and :func:`restore` use by default."""
    return (meta.get("config", {}).get("optimizer", {}).get("ema_decay") or 0) > 0


def load(workdir: str | Path, checkpoint_step: str | int = "best", *, use_ema: bool | None = None) -> Loaded:
    """``(model, variables, meta, step)`` of a workdir's checkpoint, read once.

    ``checkpoint_step``: 'best' (highest validation top-1; default), 'latest', or a step number; an
    unreadable checkpoint is reported and the next candidate read. ``use_ema``: use the EMA (parameters
    and BatchNorm statistics) when the run kept one (default: yes, as its evaluation did); True for a
    run without one is refused.
    """
    _check_use_ema(use_ema)
    raw, meta, s = _read(workdir, checkpoint_step)
    _check_ema_kept(use_ema, meta, workdir)
    model = setup.create_model(meta["model"], meta["model_kwargs"], meta.get("precision", "float32"))
    return Loaded(model, step.eval_variables(raw, use_ema=use_ema is None or use_ema), meta, s)


def _check_use_ema(use_ema) -> None:
    if use_ema is not None and not isinstance(use_ema, bool):  # "no" would have counted as yes
        raise ValueError(f"use_ema={use_ema!r}: must be True, False or None (the run's choice)")


def _check_ema_kept(use_ema, meta: dict, workdir) -> None:
    """``use_ema=True`` for a run that kept no EMA gave its trained weights, unsaid."""
    if use_ema and not kept_ema(meta):
        raise ValueError(f"use_ema=True: the run in {workdir} kept no EMA (optimizer.ema_decay 0); use_ema=None "
                         f"or False reads its trained weights")


def _check_workdir(workdir) -> None:
    if not isinstance(workdir, (str, os.PathLike)):
        raise ValueError(f"workdir={workdir!r}: the folder of a run (a str or path)")


def _checkpointer(workdir) -> checkpoint.Checkpointer:
    _check_workdir(workdir)
    return checkpoint.Checkpointer(workdir, read_only=True)


def _read(workdir, checkpoint_step) -> tuple[dict, dict, int]:
    ckpt = _checkpointer(workdir)
    try:
        return ckpt.read(checkpoint_step)
    finally:
        ckpt.close()


def restore(workdir: str | Path, checkpoint_step: str | int = "best", *, use_ema: bool | None = None):
    """``(model, variables)`` from a workdir: ``model.apply(variables, x, train=False)`` then works.
    ``checkpoint_step`` and ``use_ema`` as for :func:`load`."""
    loaded = load(workdir, checkpoint_step, use_ema=use_ema)
    return loaded.model, loaded.variables


def restore_meta(workdir: str | Path, checkpoint_step: str | int = "best") -> dict:
    """The self-description stored with a checkpoint (config, model, class names, preprocessing, ...):
    'best' / 'latest' / a step as for :func:`load`, but only the metas are read, so a checkpoint whose
    state is damaged (which :func:`load` passes over, warning) still gives its meta here."""
    ckpt = _checkpointer(workdir)
    try:
        return ckpt.read_meta(checkpoint_step)[0]
    finally:
        ckpt.close()


def output_folder(given, argument: str, default: Path, option: str) -> Path:
    """The folder a command writes into, checked before any work (``zoo.files.check_folder_to_write``):
    ``given`` (the ``argument`` a user gave), else ``default``, whose refusal suggests ``option``
    (a read-only workdir once failed only after a whole evaluation)."""
    if given is not None:
        return check_folder_to_write(given, argument)
    try:
        return check_folder_to_write(default, f"WORKDIR/{default.name}")
    except ValueError as e:
        raise ValueError(f"{e}; write elsewhere with {option} DIR") from None


def _keep_other_reports(path: Path, workdir) -> None:
    """Refuse to replace ``path`` when it is not a report of ``workdir``: two runs evaluated into one
    ``--output_dir`` at the same step and split once replaced each other's report without a word.
    The same workdir's report is replaced (the same checkpoint: the same numbers)."""
    if not path.exists():
        return
    try:
        other = json.loads(path.read_text()).get("workdir")
    except (OSError, ValueError, AttributeError):
        other = None
    if not isinstance(other, str) or not same_file(other, workdir):
        whose = f"the report of another workdir ({other})" if isinstance(other, str) else "not a report of this workdir"
        raise ValueError(f"output_dir: {path} is {whose}; choose another --output_dir for {workdir}")


def evaluate(workdir: str | Path, *, checkpoint_step: str | int = "best", split: str | None = None,
             output_dir: str | Path | None = None, plot: bool = True, use_ema: bool | None = None,
             show=None) -> dict:
    """Evaluate a checkpoint on its eval split (or ``split``) with the preprocessing it was trained
    with: loss, top-1, top-5, per-class accuracy, confusion matrix (PNG in ``output_dir``, default
    ``WORKDIR/eval``; checked before anything is evaluated, as is a report of another workdir there
    under the same name). ``use_ema`` as for :func:`load` (the report's ``weights`` says which: 'ema'
    or 'trained'; the trained weights of a run with an EMA are written as ``..._trained``, beside the
    EMA's report). ``show``: called with the report once it is written, before the PNG is drawn."""
    _check_use_ema(use_ema)
    _check_workdir(workdir)
    out = output_folder(output_dir, "output_dir", Path(workdir) / "eval", "--output_dir")
    raw, meta, s = _read(workdir, checkpoint_step)
    _check_ema_kept(use_ema, meta, workdir)
    ema = kept_ema(meta) and use_ema is not False   # the EMA when the run kept one, as its own evaluation
    variables = step.eval_variables(raw, use_ema=ema)
    run = setup.for_checkpoint(meta, split=split)
    pipe = run.eval_pipe
    name = f"step{s}_{pipe.split}" + ("_trained" if kept_ema(meta) and not ema else "")
    if output_dir is not None:   # a shared folder: another run's report of the same step and split
        _keep_other_reports(out / f"eval_{name}.json", workdir)
    ev = run_eval(compile_eval(run.model, run.step_config, run.plan), parallel.replicate(variables, run.plan), pipe,
                  run.plan)
    names = meta.get("class_names") or [str(i) for i in range(pipe.num_classes)]
    report = {"workdir": str(workdir), "step": s, "split": pipe.split, "model": meta["model"],
              "weights": "ema" if ema else "trained", "loss": ev["loss"],
              "top1": ev["top1"], "top5": ev["top5"], "count": ev["count"],
              "per_class_top1": dict(zip(names, ev["per_class_top1"])),
              "confusion": ev["confusion"].tolist()}
    if jax.process_index() == 0:
        out.mkdir(parents=True, exist_ok=True)
        with written_atomically(out / f"eval_{name}.json") as tmp:   # never half a report
            Path(tmp).write_text(json.dumps(report, indent=1))
    if show is not None:   # the figures first: drawing the PNG is what may still fail
        show(report)
    if plot and jax.process_index() == 0:
        report["confusion_png"] = str(plot_confusion(ev["confusion"], names, out / f"confusion_{name}.png",
                                                     title=f"{meta['model']} step {s}: top-1 {ev['top1']:.4f}"))
    return report


MAX_FIGURE_IN = 20.0   # a confusion figure's side at most (100 dpi): 1,000 classes once asked for 50,000 px


def plot_confusion(confusion: np.ndarray, names, path: Path, title: str = "") -> Path:
    """The ``(k, k)`` confusion matrix (rows: true class) as a PNG at ``path``: 0.5 in per class up to
    :data:`MAX_FIGURE_IN`; class names on the axes up to 30 classes, counts in the cells up to 15."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    k = len(names)
    fig, ax = plt.subplots(figsize=(min(MAX_FIGURE_IN, max(4, 0.5 * k + 2)),
                                    min(MAX_FIGURE_IN, max(4, 0.5 * k + 1.5))))
    im = ax.imshow(confusion, cmap="Blues", interpolation="nearest")
    fig.colorbar(im, ax=ax)
    if k <= 30:
        ax.set_xticks(range(k), names, rotation=90)
        ax.set_yticks(range(k), names)
        if k <= 15:
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if confusion[i, j] > confusion.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path


COMMAND = ("Evaluate a run's checkpoint with the preprocessing it was trained with: loss, top-1, top-5,\n"
           "per-class accuracy and a confusion-matrix PNG (the checkpoint carries its config).")


def _print_report(r: dict) -> None:
    """The command's figures, printed as soon as the report is written (before the PNG is drawn)."""
    weights = ", EMA weights" if r["weights"] == "ema" else ""
    print(f"{r['model']} step {r['step']} on {r['split']} ({r['count']} examples{weights}): "
          f"loss {r['loss']:.4f}  top-1 {r['top1']:.4f}  " + reporting.top5_text(r["top5"], len(r["per_class_top1"]), "top-5"))
    print("per-class top-1: " + "  ".join(f"{k}: {'-' if v is None else f'{v:.3f}'}" for k, v in r["per_class_top1"].items()),
          flush=True)


def main(argv=None) -> int:
    from train import overrides  # noqa: PLC0415
    from zoo import cli  # noqa: PLC0415

    ap = cli.parser("python -m train.evaluate", COMMAND, epilog=(
        "examples:\n  python -m train.evaluate --workdir runs/lenet5\n"
        "  python -m train.evaluate --workdir runs/lenet5 --checkpoint latest --split train\n\n"
        "the checkpoint carries its config: no config file is needed. Library: train.evaluate(workdir).\n\n"
        "published weights on a labelled set instead of a run:\n"
        "  python -m train.evaluate --pretrained MODEL[:TAG] --config.data.name=...   (--pretrained X --help)"))
    ap.add_argument("--workdir", required=True, help="the run's directory (checkpoints inside)")
    ap.add_argument("--checkpoint", default="best", help="'best' (default), 'latest' or a step number")
    ap.add_argument("--split", default=None, help="split to evaluate (default: the run's eval split)")
    ap.add_argument("--output_dir", default=None, help="where to write the report and PNG (default WORKDIR/eval)")
    ap.add_argument("--weights", choices=("ema", "trained"), default=None,
                    help="a run that kept an EMA (optimizer.ema_decay): its EMA (default, as its own evaluation) "
                         "or the trained weights")
    a = ap.parse_args(argv)
    logs.for_command()
    try:
        overrides.check_workdir(a.workdir)
        r = evaluate(a.workdir, checkpoint_step=a.checkpoint, split=a.split, output_dir=a.output_dir,
                     use_ema=None if a.weights is None else a.weights == "ema", show=_print_report)
    except (checkpoint.NoCheckpointError, ValueError, OSError) as e:
        return cli.fail(e)
    except KeyboardInterrupt:   # Ctrl-C: one line (an 18-frame traceback once); the reports written stay
        return cli.fail("interrupted (SIGINT): the evaluation stopped, nothing more was written", status=130)
    except Exception as e:  # noqa: BLE001  (a data worker that died, ...: one line, as python -m train)
        return cli.fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", status=1)
    if "confusion_png" in r:
        print(f"confusion matrix: {r['confusion_png']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
