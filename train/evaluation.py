"""Restore and evaluate checkpoints without the config file (it is inside the checkpoint).
(``train/evaluate.py`` is the command-line entry point; this module holds the library functions.)

    model, variables = train.restore("runs/lenet5")          # research code
    logits = model.apply(variables, x, train=False)
    report = train.evaluate("runs/lenet5")                     # loss, top-1/5, per-class, confusion PNG

    python -m train.evaluate --workdir runs/lenet5 [--checkpoint best|latest|STEP]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import jax
import numpy as np

from train import checkpoint, data, parallel, step
from train.loop import build_model, compile_eval, run_eval

log = logging.getLogger("train")


def _pick_step(ckpt: checkpoint.Checkpointer, which: str | int) -> list[int]:
    """Candidate steps, preferred first: 'best' (by validation top-1, else latest), 'latest', or a step."""
    steps = ckpt.steps()
    if not steps:
        raise checkpoint.NoCheckpointError(f"no checkpoints in {ckpt.directory}")
    if which == "latest":
        return list(reversed(steps))
    if which == "best":
        best = ckpt.best_step()
        return ([best] if best is not None else []) + [s for s in reversed(steps) if s != best]
    s = int(which)
    if s not in steps:
        raise ValueError(f"checkpoint={which!r}: not in {ckpt.directory} (available: {steps}, 'best', 'latest')")
    return [s]


def _load(workdir, which) -> tuple[dict, dict, int]:
    """(raw state, meta, step), falling back past unreadable checkpoints (with a warning)."""
    ckpt = checkpoint.Checkpointer(workdir, read_only=True)
    try:
        candidates = _pick_step(ckpt, which)
        for s in candidates:
            try:
                raw, meta = ckpt.restore_raw(s)
                return raw, meta, s
            except Exception as e:  # noqa: BLE001
                if len(candidates) == 1:
                    raise
                log.warning("checkpoint %d in %s cannot be restored (%s); trying the previous one", s,
                            ckpt.directory, str(e).splitlines()[0][:200])
        raise checkpoint.NoCheckpointError(f"no readable checkpoint in {ckpt.directory}")
    finally:
        ckpt.close()


def _variables(raw: dict, use_ema: bool | None) -> dict:
    ema = raw.get("ema_params")
    params = ema if (use_ema or use_ema is None) and ema else raw["params"]
    out = {"params": params}
    if raw.get("batch_stats"):
        out["batch_stats"] = raw["batch_stats"]
    return out


def restore(workdir: str | Path, *, checkpoint_step: str | int = "best", use_ema: bool | None = None):
    """``(model, variables)`` from a workdir: ``model.apply(variables, x, train=False)`` then works.

    ``checkpoint_step``: 'best' (highest validation top-1; default), 'latest', or a step number.
    ``use_ema``: use the parameter EMA when the run kept one (default: yes, as its evaluation did).
    """
    raw, meta, _ = _load(workdir, checkpoint_step)
    model = build_model(meta["model"], meta["model_kwargs"], meta.get("precision", "float32"))
    return model, _variables(raw, use_ema)


def restore_meta(workdir: str | Path, *, checkpoint_step: str | int = "best") -> dict:
    """The self-description stored with a checkpoint (config, model, class names, preprocessing, ...)."""
    return _load(workdir, checkpoint_step)[1]


def evaluate(workdir: str | Path, *, checkpoint_step: str | int = "best", split: str | None = None,
             output_dir: str | Path | None = None, plot: bool = True) -> dict:
    """Evaluate a checkpoint on its eval split (or ``split``) with the preprocessing it was trained
    with: loss, top-1, top-5, per-class accuracy, confusion matrix (PNG in ``output_dir``, default
    ``WORKDIR/eval``)."""
    raw, meta, s = _load(workdir, checkpoint_step)
    cfg = meta["config"]
    pp = meta["preprocessing"]
    model = build_model(meta["model"], meta["model_kwargs"], meta.get("precision", "float32"),
                        axis_name=parallel.AXIS)
    batch = int(cfg["eval_batch_size"])
    plan = parallel.make_plan(cfg.get("parallelism", "shard_map"), -1)
    if batch % plan.num_devices:
        plan = parallel.make_plan(plan.parallelism, 1)
    pipe = data.load(cfg["data"], split=split or cfg["data"]["eval_split"], train=False, batch_size=batch,
                     image_shape=(*pp["image_size"], pp["channels"]), seed=int(cfg.get("seed", 0)))
    if pipe.preprocessing != pp:
        raise ValueError(f"the eval preprocessing rebuilt from the checkpoint differs from the stored one:\n"
                         f"{pipe.preprocessing}\nvs\n{pp}")
    variables = _variables(raw, None)
    state = step.TrainState(step=np.asarray(s), params=variables["params"],
                            batch_stats=variables.get("batch_stats", {}), opt_state=None, rng=None)
    cfg_step = step.StepConfig(loss=cfg.get("loss", "cross_entropy"), label_smoothing=cfg.get("label_smoothing", 0.0))
    ev = run_eval(compile_eval(model, cfg_step, plan, use_ema=False), parallel.replicate(state, plan), pipe, plan)
    names = meta.get("class_names") or [str(i) for i in range(pipe.num_classes)]
    report = {"workdir": str(workdir), "step": s, "split": pipe.split, "model": meta["model"], "loss": ev["loss"],
              "top1": ev["top1"], "top5": ev["top5"], "count": ev["count"],
              "per_class_top1": dict(zip(names, ev["per_class_top1"])),
              "confusion": ev["confusion"].tolist()}
    if jax.process_index() == 0:
        out = Path(output_dir) if output_dir else Path(workdir) / "eval"
        out.mkdir(parents=True, exist_ok=True)
        with open(out / f"eval_step{s}_{pipe.split}.json", "w") as f:
            json.dump(report, f, indent=1)
        if plot:
            report["confusion_png"] = str(plot_confusion(ev["confusion"], names, out / f"confusion_step{s}_{pipe.split}.png",
                                                         title=f"{meta['model']} step {s}: top-1 {ev['top1']:.4f}"))
    return report


def plot_confusion(confusion: np.ndarray, names, path: Path, title: str = "") -> Path:
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    k = len(names)
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * k + 2), max(4, 0.5 * k + 1.5)))
    im = ax.imshow(confusion, cmap="Blues")
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--checkpoint", default="best", help="'best' (default), 'latest' or a step number")
    ap.add_argument("--split", default=None, help="split to evaluate (default: the run's eval split)")
    ap.add_argument("--output_dir", default=None, help="where to write the report and PNG (default WORKDIR/eval)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        r = evaluate(a.workdir, checkpoint_step=a.checkpoint, split=a.split, output_dir=a.output_dir)
    except (checkpoint.NoCheckpointError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{r['model']} step {r['step']} on {r['split']} ({r['count']} examples): "
          f"loss {r['loss']:.4f}  top-1 {r['top1']:.4f}  top-5 {r['top5']:.4f}")
    print("per-class top-1: " + "  ".join(f"{k}: {'-' if v is None else f'{v:.3f}'}" for k, v in r["per_class_top1"].items()))
    if "confusion_png" in r:
        print(f"confusion matrix: {r['confusion_png']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
