"""What a search leaves in its workdir besides the study: ``trials.csv``, the figures in
``figures/``, the ``best`` link, and the ranking printed at the end.

* ``trials.csv``: one row per trial of the study (voided ones left out): ``trial``, each searched
  field under its config path, ``val_top1``, ``val_loss`` (the last evaluation), ``steps`` trained,
  ``seconds`` (wall time from its group's start to its end: trials of a group share it), ``status``
  (complete, pruned, failed, running, waiting).
* ``figures/val_top1_vs_<path>.png``: validation top-1 against each searched parameter (log axis for
  log-distributed ones); ``figures/learning_curves.png``: every trial's validation top-1 per epoch;
  ``figures/layout.png`` (two searched parameters): where the trials fall in the plane with each
  parameter's marginal, next to where the other layout (grid or random) of as many trials would
  fall: the notes' picture of why random search tests more values of the parameter that matters.
* ``best``: a link to the best trial's workdir (``trials/<n>``, checkpoint included).
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
from optuna.trial import TrialState

from zoo.files import save_figure

STATUS = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
          TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}


def rows(trials: list, space) -> list[dict]:
    """One dict per trial (``study.Trials.all()``): the columns of trials.csv."""
    out = []
    for t in trials:
        a = t.user_attrs
        out.append({"trial": t.number, **{p: t.params.get(p) for p in space.paths},
                    "val_top1": a.get("val_top1"), "val_loss": a.get("val_loss"), "steps": a.get("steps"),
                    "seconds": a.get("seconds"), "status": STATUS.get(t.state, str(t.state))})
    return out


def _atomic(path: Path, write) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as f:
        write(f)
    os.replace(tmp, path)
    return path


def write_csv(table: list[dict], space, path: Path) -> Path:
    fields = ["trial", *space.paths, "val_top1", "val_loss", "steps", "seconds", "status"]

    def write(f):
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in table:
            w.writerow({k: "" if r.get(k) is None else r[k] for k in fields})
    return _atomic(path, write)


def best_key(val_top1: float, number: int) -> tuple:
    """The order of complete trials: validation top-1, ties to the lowest trial number (the ``best`` row,
    the ranking, and the trial a group checkpoints all use it)."""
    return (val_top1, -number)


def best_row(table: list[dict]) -> dict | None:
    done = [r for r in table if r["status"] == "complete" and r["val_top1"] is not None]
    return max(done, key=lambda r: best_key(r["val_top1"], r["trial"])) if done else None


def link_best(workdir: Path, number: int) -> str | None:
    """``WORKDIR/best`` -> ``trials/<number>`` (replaced atomically; a ``best`` that is not our link is left
    alone). None when linked, else why not."""
    target, link = Path("trials") / str(number), Path(workdir) / "best"
    if not (Path(workdir) / target / "checkpoints").is_dir():
        return f"no checkpoint in {Path(workdir) / target} (it is written by the process that trains the trial)"
    if link.exists() and not link.is_symlink():
        return f"{link} is not the search's link (left alone); the checkpoint is in {Path(workdir) / target}"
    tmp = link.with_name(f".best.{os.getpid()}")
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(target, target_is_directory=True)
    os.replace(tmp, link)
    return None


def ranking(table: list[dict], space, top: int = 10) -> str:
    """The printed ranking: the best ``top`` complete trials by validation top-1 (``best_key``), then the
    pruned and failed ones that reported a top-1, unranked (``-``)."""
    done = sorted((r for r in table if r["val_top1"] is not None), reverse=True,
                  key=lambda r: (r["status"] == "complete", best_key(r["val_top1"], r["trial"])))[:top]
    cols = ["rank", "trial", *space.paths, "val_top1", "val_loss", "status"]

    def cell(r, k, i):
        v = (i + 1 if r["status"] == "complete" else "-") if k == "rank" else r.get(k)
        return f"{v:.4g}" if isinstance(v, float) and k not in ("val_top1", "val_loss") else (
            f"{v:.4f}" if isinstance(v, float) else str(v))
    body = [[cell(r, k, i) for k in cols] for i, r in enumerate(done)]
    widths = [max(len(c), *(len(b[j]) for b in body)) if body else len(c) for j, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- figures

def curves(workdir: Path, table: list[dict], trials: list) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{trial: (epochs, val top-1)}`` from each trial's metrics.jsonl."""
    spe = {t.number: t.user_attrs.get("steps_per_epoch") or 1 for t in trials}
    out = {}
    for r in table:
        path = Path(workdir) / "trials" / str(r["trial"]) / "metrics.jsonl"
        if not path.is_file():
            continue
        lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        ev = [(x["step"] / spe[r["trial"]], float("nan") if x["top1"] is None else x["top1"])   # null: not finite
              for x in lines if x.get("split") == "eval"]
        if ev:
            out[r["trial"]] = tuple(np.asarray(v) for v in zip(*ev))
    return out


def figures(workdir: Path, table: list[dict], trials: list, space, method: str) -> list[Path]:
    """Write the figures (matplotlib, Agg) into ``WORKDIR/figures``; returns their paths."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    out_dir = Path(workdir) / "figures"
    out_dir.mkdir(parents=True, exist_ok=True)
    done = [r for r in table if r["val_top1"] is not None]
    paths = []
    for p in space.params:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        _scatter_param(ax, p, done)
        paths.append(_save(fig, out_dir / f"val_top1_vs_{p.path}.png", plt))
    fig, ax = plt.subplots(figsize=(6, 4))
    for number, (epochs, top1) in sorted(curves(workdir, table, trials).items()):
        status = next(r["status"] for r in table if r["trial"] == number)
        ax.plot(epochs, top1, "-" if status == "complete" else ":", marker=".", lw=1, label=f"{number} ({status})")
    ax.set(xlabel="epoch", ylabel="validation top-1", title="learning curves of all trials")
    if not ax.lines:    # no trial evaluated yet (a search stopped in its first epoch)
        ax.text(0.5, 0.5, "no trial has been evaluated yet", ha="center", va="center", transform=ax.transAxes)
    elif len(table) <= 16:
        ax.legend(fontsize=6, ncol=2)
    paths.append(_save(fig, out_dir / "learning_curves.png", plt))
    numeric = [p for p in space.params if p.values is None or all(isinstance(v, (int, float)) for v in p.values)]
    if len(space.params) == 2 and len(numeric) == 2:
        paths.append(_layout(out_dir / "layout.png", plt, space, done, method, len(table)))
    return paths


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path


def _scatter_param(ax, p, done: list[dict]) -> None:
    x = [r[p.path] for r in done]
    y = [r["val_top1"] for r in done]
    if p.values is not None and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p.values):
        labels = [str(v) for v in p.values]
        x = [labels.index(str(v)) for v in x]
        ax.set_xticks(range(len(labels)), labels)
    colors = ["C0" if r["status"] == "complete" else "C3" for r in done]
    ax.scatter(x, y, c=colors, s=18)
    if p.log:
        ax.set_xscale("log")
    ax.set(xlabel=p.path, ylabel="validation top-1", title=f"top-1 vs {p.path} (red: pruned / failed)")


def other_layout(space, method: str, n: int, seed: int = 0) -> np.ndarray:
    """``(n, 2)`` points of the other layout over the space's two ranges: a random layout for a grid
    search, the nearest square grid for a random / TPE one (log ranges sampled / spaced in log)."""
    rng = np.random.default_rng(seed)
    cols = []
    side = max(2, int(round(math.sqrt(n))))
    for p in space.params:
        lo, hi = min(p.extremes()), max(p.extremes())
        f = (np.log, np.exp) if p.log else (lambda v: v, lambda v: v)
        a, b = f[0](lo), f[0](hi)
        if method == "grid":
            cols.append(f[1](rng.uniform(a, b, n)))
        else:
            cols.append(f[1](np.linspace(a, b, side)))
    if method == "grid":
        return np.stack(cols, 1)
    return np.stack([g.ravel() for g in np.meshgrid(*cols, indexing="ij")], 1)


def _layout(path: Path, plt, space, done: list[dict], method: str, n: int) -> Path:
    """Two panels, each the (x, y) plane with its marginals: above, every x value tried (with its
    validation top-1 for this search), on the right every y value."""
    px, py = space.params
    ours = np.asarray([[r[px.path], r[py.path]] for r in done], float).reshape(-1, 2)
    top1 = np.asarray([r["val_top1"] for r in done], float)
    other = other_layout(space, method, max(n, 1))
    names = ("grid", "random") if method == "grid" else ("random" if method == "random" else "TPE", "grid")
    fig = plt.figure(figsize=(10, 4.8))
    cax = fig.add_axes([0.93, 0.12, 0.012, 0.58])
    for j, (pts, title, scores) in enumerate([(ours, f"this {names[0]} search", top1),
                                              (other, f"a {names[1]} layout, for comparison", None)]):
        x0 = 0.08 + 0.44 * j
        ax = fig.add_axes([x0, 0.12, 0.29, 0.58])
        top = fig.add_axes([x0, 0.72, 0.29, 0.14], sharex=ax)
        right = fig.add_axes([x0 + 0.30, 0.12, 0.06, 0.58], sharey=ax)
        if scores is not None and len(pts):
            sc = ax.scatter(pts[:, 0], pts[:, 1], c=scores, cmap="viridis", s=30)
            fig.colorbar(sc, cax=cax, label="val top-1")
            top.scatter(pts[:, 0], scores, c=scores, cmap="viridis", s=12)
            right.scatter(scores, pts[:, 1], c=scores, cmap="viridis", s=12)
        else:
            ax.scatter(pts[:, 0], pts[:, 1], facecolors="none", edgecolors="k", s=30)
            top.set_yticks([])
            right.set_xticks([])
        for v in np.unique(pts[:, 0]):  # the marginals: every value each parameter is tried at
            top.axvline(v, color="C1", lw=0.8, alpha=0.6)
        for v in np.unique(pts[:, 1]):
            right.axhline(v, color="C1", lw=0.8, alpha=0.6)
        top.set_title(f"{title}: {len(pts)} trials try {len(np.unique(pts[:, 0]))} values of x and "
                      f"{len(np.unique(pts[:, 1]))} of y", fontsize=8)
        top.tick_params(which="both", labelbottom=False, bottom=False, labelsize=6)
        right.tick_params(which="both", labelleft=False, left=False, labelsize=6)
        for p, set_scale, set_lim in ((px, ax.set_xscale, ax.set_xlim), (py, ax.set_yscale, ax.set_ylim)):
            lo, hi = min(p.extremes()), max(p.extremes())
            set_scale("log" if p.log else "linear")
            pad = (hi / lo) ** 0.05 if p.log else (hi - lo) * 0.05
            set_lim(lo / pad, hi * pad) if p.log else set_lim(lo - pad, hi + pad)
        ax.set(xlabel=f"x: {px.path}", ylabel=f"y: {py.path}")
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path
