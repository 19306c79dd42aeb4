"""Self-describing orbax checkpoints.

Layout (``WORKDIR/checkpoints/<step>/``), written by an ``orbax.checkpoint.CheckpointManager``:

* ``state/``  the whole train state (step, params, batch_stats, opt_state, rng, EMA, loss scale) as
  host arrays, so it restores on any device count;
* ``data/``   the input iterator's state (JSON): resuming continues with the very next batch;
* ``meta/``   JSON: the full config, model name and constructor arguments, class names, preprocessing,
  epoch, validation metrics, library versions. ``train.restore`` needs nothing else.

Retention: the last ``keep`` checkpoints plus the best by validation top-1. Saving is asynchronous;
a checkpoint is visible only once complete (orbax commits it atomically), a non-finite state is
refused, and a latest checkpoint that cannot be read is skipped with a warning in favour of the
previous one.
"""
from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from train.step import all_finite

log = logging.getLogger(__name__)

LIBRARIES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "tensorflow-datasets", "numpy", "cnn-zoo")


class WorkdirMismatchError(ValueError):
    """The workdir holds checkpoints of another model or class count."""


class NoCheckpointError(FileNotFoundError):
    """No readable checkpoint in the workdir."""


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def checkpoint_dir(workdir: str | os.PathLike) -> Path:
    return Path(workdir).absolute() / "checkpoints"


class Checkpointer:
    """Save and restore train states of one workdir."""

    def __init__(self, workdir: str | os.PathLike, *, keep: int = 3, async_save: bool = True, read_only: bool = False):
        if keep < 1:
            raise ValueError(f"checkpoint.keep={keep}: must be >= 1")
        self.directory = checkpoint_dir(workdir)
        policy = policies.AnyPreservationPolicy([
            policies.LatestN(keep),
            policies.BestN(get_metric_fn=lambda m: m["val_top1"], n=1, keep_checkpoints_without_metrics=False),
        ])
        options = ocp.CheckpointManagerOptions(preservation_policy=policy, enable_async_checkpointing=async_save,
                                               create=not read_only, read_only=read_only)
        if read_only and not self.directory.is_dir():
            raise NoCheckpointError(f"no checkpoints in {self.directory}")
        self.manager = ocp.CheckpointManager(self.directory, item_names=("state", "data", "meta"), options=options)

    # ------------------------------------------------------------------ reading
    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def meta(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

    def candidates(self, which: str | int = "latest") -> list[int]:
        """Steps to try, preferred first: 'latest' (newest first), 'best' (highest validation top-1,
        then the others newest first) or one step number (ValueError if absent)."""
        steps = self.steps()
        if not steps:
            raise NoCheckpointError(f"no checkpoints in {self.directory}")
        if which == "latest":
            return list(reversed(steps))
        if which == "best":
            best = self.best_step()
            return ([best] if best is not None else []) + [s for s in reversed(steps) if s != best]
        s = int(which)
        if s not in steps:
            raise ValueError(f"checkpoint={which!r}: not in {self.directory} (available: {steps}, 'best', 'latest')")
        return [s]

    def _readable(self, candidates: list[int], read, *, warn: bool = True):
        """THE fallback loop: ``(step, read(step))`` for each candidate that reads, in order; one that
        fails is reported (``warn``) and passed over."""
        for s in candidates:
            try:
                value = read(s)
            except Exception as e:  # noqa: BLE001  (an unreadable checkpoint must not stop us)
                if warn:
                    log.warning("checkpoint %d in %s cannot be restored (%s: %s); falling back to the previous one",
                                s, self.directory, type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")
                continue
            yield s, value

    def _first_readable(self, candidates: list[int], read, *, explicit: bool) -> tuple[int, Any]:
        """``(step, read(step))`` of the first candidate that reads. ``explicit`` (one step the caller
        asked for): its error is raised as it is."""
        if explicit:
            return candidates[0], read(candidates[0])
        for found in self._readable(candidates, read):
            return found
        raise NoCheckpointError(f"no readable checkpoint in {self.directory} (tried {candidates})")

    def latest_meta(self) -> dict | None:
        """Meta of the newest checkpoint whose meta reads (None: no checkpoint)."""
        return next((m for _, m in self._readable(list(reversed(self.steps())), self.meta)), None)

    def best_step(self) -> int | None:
        best, best_val = None, -1.0
        for step, meta in self._readable(self.steps(), self.meta, warn=False):
            val = meta.get("metrics", {}).get("val_top1")
            if val is not None and val > best_val:
                best, best_val = step, val
        return best

    def restore(self, template, *, step: int | None = None) -> tuple[Any, Any, dict, int]:
        """Restore ``(state, data_state, meta, step)`` into ``template`` (a host pytree of the state's
        structure, e.g. from ``jax.eval_shape``). Default: the latest readable checkpoint; a
        checkpoint that fails to read is reported and the previous one is tried."""
        target = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), template)

        def read(s):
            r = self.manager.restore(s, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()))
            if not all_finite(r.state):
                raise ValueError("non-finite values in the state")
            return r

        s, r = self._first_readable([step] if step is not None else self.candidates("latest"), read,
                                    explicit=step is not None)
        return r.state, r.data, r.meta, s

    def restore_raw(self, step: int) -> tuple[dict, dict]:
        """(state as nested dicts of numpy arrays, meta) without a template (``train.restore``)."""
        r = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                               meta=ocp.args.JsonRestore()))
        return r.state, r.meta

    def read(self, which: str | int = "best") -> tuple[dict, dict, int]:
        """``(state as nested dicts of numpy arrays, meta, step)`` of checkpoint ``which`` ('best',
        'latest' or a step number), read once, falling back past unreadable ones (with a warning)."""
        candidates = self.candidates(which)
        s, (raw, meta) = self._first_readable(candidates, self.restore_raw,
                                              explicit=which not in ("best", "latest"))
        return raw, meta, s

    # ------------------------------------------------------------------ writing
    def save(self, step: int, state, *, data_state: dict, meta: dict, metrics: dict | None = None) -> bool:
        """Save asynchronously (``state``: host numpy pytree, not modified afterwards). A
        non-finite state is refused (returns False). ``metrics['val_top1']`` ranks it for 'best'."""
        if not all_finite(state):
            log.error("step %d: the train state has non-finite values; checkpoint NOT written", step)
            return False
        if step in self.manager.all_steps():
            return True
        meta = {**meta, "step": int(step), "metrics": metrics or {}, "versions": library_versions()}
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        data=ocp.args.JsonSave(data_state),
                                                        meta=ocp.args.JsonSave(meta)),
                          metrics={"val_top1": metrics["val_top1"]} if metrics and "val_top1" in metrics else None,
                          force=True)
        return True

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def check_compatible(meta: dict | None, *, model: str, num_classes: int, workdir) -> None:
    """Refuse a workdir holding checkpoints of another architecture or class count."""
    if meta is None:
        return
    if meta.get("model") != model or int(meta.get("num_classes", -1)) != int(num_classes):
        raise WorkdirMismatchError(
            f"workdir {workdir} holds checkpoints of model {meta.get('model')!r} with {meta.get('num_classes')} "
            f"classes, but this run is {model!r} with {num_classes} classes; nothing was changed. Use another "
            f"--workdir (or remove {checkpoint_dir(workdir)} yourself to start over).")
