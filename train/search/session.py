"""``train.search(config, space, workdir, method=..., trials=...)``: a hyper-parameter search.

    result = train.search(config, ["optimizer.learning_rate=loguniform(1e-4, 1e-1)",
                                   "optimizer.weight_decay=uniform(0, 1e-3)"], "runs/search",
                          method="random", trials=16)
    result.best            # the best trial's row of trials.csv
    result.best_dir        # its workdir: train.restore(result.best_dir), train.evaluate(result.best_dir)

The loop: check the space and open the study (nothing is written for bad input or another
search's study), give the trials of processes that are gone back to the queue, then ask Optuna for
up to ``parallel_trials`` trials at a time, split them into groups of one structure
(``train/search/group.py``) and train each group side by side (``train/search/runner.py``); after
each group rewrite trials.csv; at the end write the figures, link the best trial and print the
ranking. SIGINT / SIGTERM stop at the next step (an evaluation at its next batch): the unfinished
trials go back to the study, and the same command resumes.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import ml_collections

from train import interrupts, lock
from train.search import group as group_mod
from train.search import report, runner, space as space_mod, study as study_mod

log = logging.getLogger("train")


@dataclasses.dataclass
class SearchResult:
    workdir: Path
    study: str
    storage: str
    table: list[dict]            # the rows of trials.csv
    best: dict | None            # the best complete trial's row
    best_dir: Path | None        # its workdir (checkpoint): train.restore / train.evaluate take it
    interrupted: str | None = None
    figures: list[Path] = dataclasses.field(default_factory=list)


def trial_count(method: str, space: space_mod.Space, trials: int | None) -> int:
    """How many trials the study runs: ``trials``; for a grid, its size (``trials`` may not be smaller)."""
    if method not in study_mod.METHODS:
        raise ValueError(f"--method {method!r}: allowed {', '.join(study_mod.METHODS)}")
    if trials is not None and (not isinstance(trials, int) or isinstance(trials, bool) or trials < 1):
        raise ValueError(f"--trials {trials!r}: must be an integer >= 1")
    if method != "grid":
        if trials is None:
            raise ValueError(f"--trials: needed for --method {method} (how many trials to run)")
        return trials
    size = space.grid_size()
    if trials is not None and size > trials:
        shape = " x ".join(str(len(p.values)) for p in space.params)
        raise ValueError(f"--trials {trials}: the grid has {size} points ({shape}); give --trials {size} "
                         f"(or fewer grid values)")
    if trials is not None and trials > size:
        log.warning("--trials %d: the grid has %d points, so the search runs %d trials", trials, size, size)
    return size


def search(config: ml_collections.ConfigDict, space, workdir: str | Path, *, method: str = "random",
           trials: int | None = None, parallel_trials: int | None = None, prune: str | bool | None = None,
           study: str = "search", storage: str | None = None, seed: int | None = None, chunk: int | None = None,
           memory_limit: int | None = None, plots: bool = True, fixed=()) -> SearchResult:
    """Run (or resume) a search; see the module docstring. ``space``: ``'path=dist'`` strings or a
    ``{path: 'dist'}`` dict. ``prune``: True / 'halving' (successive halving) or 'hyperband'.
    ``seed``: the samplers' (default ``config.seed``). ``chunk``: trials vmapped at once inside a
    group (default: all on accelerators, one on CPU; NOTES.md). ``memory_limit``: bytes a device
    may use for a group (default: what it offers). ``fixed``: the fields the command line set
    (``--config.FIELD=VALUE``), refused in ``space``."""
    parsed = space_mod.parse(space, config, method, fixed)
    total = trial_count(method, parsed, trials)
    if parallel_trials is not None and (not isinstance(parallel_trials, int) or parallel_trials < 1):
        raise ValueError(f"--parallel-trials {parallel_trials!r}: must be an integer >= 1")
    if memory_limit is not None and not (isinstance(memory_limit, int) and memory_limit > 0):
        raise ValueError(f"memory_limit={memory_limit!r}: bytes a device may use for a group, an integer > 0")
    if not isinstance(study, str) or not study.strip():
        raise ValueError(f"--study {study!r}: give a name (default 'search')")
    evaluations = math.ceil(config.num_epochs / config.eval_every_epochs) if config.num_train_steps <= 0 else None
    pruner = study_mod.make_pruner("halving" if prune is True else (prune or None), evaluations)
    workdir = Path(workdir)
    lock.make_workdir(workdir)
    url = study_mod.storage_url(storage, workdir)
    given = None if study_mod.is_default_storage(url, workdir) else url   # the default, however spelled
    must_exist = study_mod.check_trials_owner(workdir, study, given)
    opened = study_mod.open_study(url, study, study_mod.identity(method, parsed, config), pruner=pruner,
                                  must_exist=must_exist, workdir=workdir)
    study_mod.claim_trials(workdir, study, given)
    handed = study_mod.Trials(opened, parsed, method, config.seed if seed is None else seed, total)
    handed.reclaim()
    chunk = chunk if chunk is not None else default_chunk()
    programs = group_mod.Programs()   # groups of one structure share their run and compiled steps
    interrupted = None
    with interrupts.stop_signals() as stop, handed.heartbeat():
        while not interrupted:
            try:
                asked = handed.ask(parallel_trials or total)
            except BaseException:
                handed.give_back()
                raise
            if not asked:
                break
            members = [group_mod.Member(t.number, values, parsed.apply(config, values)) for t, values in asked]
            for members_g in group_mod.partition(members, parallel_trials):
                numbers = ", ".join(str(m.number) for m in members_g)
                print(f"trials {numbers}: training side by side", flush=True)
                try:
                    outcomes = runner.run_group(members_g, handed, workdir, prune=bool(prune),
                                                 stop=stop, chunk=chunk, memory_limit=memory_limit,
                                                 programs=programs)
                except runner.Interrupted as e:
                    interrupted = str(e)
                    break
                except BaseException:
                    handed.give_back()
                    raise
                _write_table(handed, parsed, workdir)
                print("trials " + ", ".join(f"{m.number}: {outcomes[m.number].status} (val top-1 "
                                            f"{outcomes[m.number].val.get('top1', float('nan')):.4f})"
                                            for m in members_g), flush=True)
            if interrupted:
                handed.give_back()
    return finish(handed, parsed, workdir, method, url, study, interrupted, plots)


def default_chunk() -> int | None:
    import jax  # noqa: PLC0415
    return 1 if jax.default_backend() == "cpu" else None


def _write_table(handed: study_mod.Trials, parsed, workdir: Path) -> list[dict]:
    table = report.rows(handed.all(), parsed)
    report.write_csv(table, parsed, workdir / "trials.csv")
    return table


def finish(handed: study_mod.Trials, parsed, workdir: Path, method: str, url: str, study: str,
           interrupted: str | None, plots: bool) -> SearchResult:
    """trials.csv, figures, the ``best`` link and the printed ranking."""
    table = _write_table(handed, parsed, workdir)
    best = report.best_row(table)
    best_dir, unlinked = None, None
    if best is not None:
        unlinked = report.link_best(workdir, best["trial"])
        best_dir = workdir / "trials" / str(best["trial"]) if unlinked is None else None
    figs = report.figures(workdir, table, handed.all(), parsed, method) if plots and table else []
    print(report.ranking(table, parsed), flush=True)
    if best is not None:
        where = f"{best_dir} (python -m train.evaluate --workdir {workdir / 'best'})" if best_dir else \
            f"not linked as {workdir / 'best'}: {unlinked}"
        print(f"best: trial {best['trial']}, val top-1 {best['val_top1']:.4f}: {where}", flush=True)
    elif table and not interrupted:
        counts = ", ".join(f"{sum(r['status'] == s for r in table)} {s}" for s in ("failed", "pruned")
                           if any(r["status"] == s for r in table))
        print(f"no trial completed ({counts}): no best trial to link", flush=True)
    if interrupted:
        print(f"interrupted by {interrupted}: unfinished trials go back to the study; run the same command "
              f"again to resume", flush=True)
    return SearchResult(workdir, study, url, table, best, best_dir, interrupted, figs)
