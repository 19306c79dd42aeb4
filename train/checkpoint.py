"""Self-describing orbax checkpoints, written by one process per workdir, verified when read.

Layout (``WORKDIR/checkpoints/<step>/``), written by an ``orbax.checkpoint.CheckpointManager``:

* ``state/``  the whole train state (step, params, batch_stats, opt_state, rng, EMA, loss scale) as
  host arrays, so it restores on any device count;
* ``data/``   the input iterator's state (JSON): resuming continues with the very next batch;
* ``meta/``   JSON: the full config, model name and constructor arguments, class names, preprocessing,
  epoch, validation metrics, library versions, and a CRC-32 of every array of ``state/``
  (``checksums``). ``train.restore`` needs nothing else.

Retention: the last ``keep`` checkpoints plus the best by validation top-1 (:class:`KeepBest`, which
reads the top-1 of checkpoints of earlier processes from their ``meta/``: orbax's own ``BestN`` knows
only the metrics of this process's saves, so a resumed run deleted its best). Saving is asynchronous;
a checkpoint is visible only once complete (orbax commits it atomically) and a non-finite state is
refused. A save that fails (read-only folder, full disk) raises :class:`CheckpointWriteError`, one
line naming the folder and the cause, and leaves the committed checkpoints as they were.

Reading verifies the checksums (orbax 0.12 checksums no array content) and that every value is
finite. A checkpoint that cannot be read, or reads other than it was written, is reported and the
previous one is used; it is moved into ``checkpoints/corrupt/<step>`` (never deleted), so later runs
do not trip over it again, by the process that trains in the workdir or by a reader when none does.
A read error of the machine's state (``checkpoint_errors.is_damage``: permissions, memory, file
handles) is raised as it is and moves nothing.
Checkpoints written before checksums existed restore as before (nothing to compare).

The process that trains in a workdir holds its lock (``train/lock.py``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import logging
import os
import platform
from pathlib import Path
from typing import Any, NamedTuple

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from train import logs
from train.checkpoint_content import checksums, into, leaf_names, verify  # noqa: F401  (re-exported)
from train.checkpoint_errors import (CheckpointWriteError, CorruptCheckpointError, NoCheckpointError,  # noqa: F401
                                     WorkdirMismatchError, cause, is_damage, write_cause)
from train.lock import WorkdirLock
from train.step import all_finite
from zoo.files import written_atomically

log = logging.getLogger(__name__)

LIBRARIES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "tensorflow-datasets", "numpy", "cnn-zoo")
CORRUPT = "corrupt"   # checkpoints/corrupt/<step>: checkpoints set aside


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


# ----------------------------------------------------------------------------- the checkpointer

class Stored(NamedTuple):
    state: dict        # nested dicts of numpy arrays, verified against the checksums
    meta: dict
    data: dict | None  # the input iterator's state (None unless asked for)


def meta_file(directory: Path, step: int) -> Path:
    """Where orbax's ``JsonSave`` put checkpoint ``step``'s meta (read without the manager: 'best')."""
    return directory / str(step) / "meta" / "metadata"


@dataclasses.dataclass
class KeepBest:
    """Orbax preservation policy: keep the checkpoint of the highest validation top-1, the first of
    equals (as :meth:`Checkpointer.best_step`). The top-1 is the save's metrics for this process's
    checkpoints, else read once from the checkpoint's ``meta/metadata`` JSON (a meta that does not read
    ranks nowhere)."""

    directory: Path
    top1: dict = dataclasses.field(default_factory=dict)   # step -> val_top1 or None

    def value(self, info) -> float | None:
        if info.metrics and "val_top1" in info.metrics:
            return float(info.metrics["val_top1"])
        if info.step not in self.top1:
            try:
                meta = json.loads(meta_file(self.directory, info.step).read_text())
                v = meta.get("metrics", {}).get("val_top1")
                self.top1[info.step] = float(v) if v is not None else None
            except (OSError, ValueError, AttributeError, TypeError):
                self.top1[info.step] = None
        return self.top1[info.step]

    def should_preserve(self, checkpoints, *, context) -> list[bool]:
        values = [self.value(c) for c in checkpoints]
        ranked = [(v, -i) for i, v in enumerate(values) if v is not None]
        best = -max(ranked)[1] if ranked else None
        return [i == best for i in range(len(checkpoints))]


class Checkpointer:
    """Save and restore train states of one workdir. ``read_only``: never writes, except to set a
    corrupt checkpoint aside when no process trains in the workdir."""

    def __init__(self, workdir: str | os.PathLike, *, keep: int = 3, async_save: bool = True, read_only: bool = False):
        if keep < 1:
            raise ValueError(f"checkpoint.keep={keep}: must be >= 1")
        self.workdir = Path(workdir).absolute()
        self.directory = checkpoint_dir(workdir)
        self.read_only = read_only
        if read_only and not self.directory.is_dir():
            raise NoCheckpointError(f"no checkpoints in {self.directory}")
        self._keep_best = KeepBest(self.directory)
        policy = policies.AnyPreservationPolicy([policies.LatestN(keep), self._keep_best])
        # The folder is made by the first save (a run that saved nothing leaves none); folders are
        # created synchronously, so a read-only folder fails in save() itself, not in orbax's threads
        # (which would then wait 20 minutes for each other); a writer holds the workdir lock, so
        # temporary folders of a killed run are its own to clean.
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy, enable_async_checkpointing=async_save and not read_only, create=False,
            cleanup_tmp_directories=not read_only, save_interval_steps=0 if read_only else 1,
            async_options=ocp.AsyncOptions(create_directories_asynchronously=False))
        self.manager = self._listing(lambda: ocp.CheckpointManager(self.directory, item_names=("state", "data", "meta"),
                                                                   options=options))
        logs.ignore_closed_loop_callbacks()  # tensorstore's callbacks after a failed read or write
        self._moved: set[int] = set()   # steps this object set aside
        self._in_flight: int | None = None
        self._failed: CheckpointWriteError | None = None

    def _listing(self, make, tries: int = 5):
        """``make()``, which lists the steps (orbax: the folders, then each one's commit time); a step
        the training process deleted in between (its retention: a reader beside a live run) raised
        FileNotFoundError from orbax's threads: list again."""
        for attempt in range(tries):
            try:
                return make()
            except FileNotFoundError as e:
                if attempt + 1 == tries or not str(e.filename or "").startswith(str(self.directory)):
                    raise

    def _gone(self, step: int) -> bool:
        """Whether checkpoint ``step`` was deleted since the steps were listed, not set aside by us (not
        damage: a live run's retention)."""
        return not (self.directory / str(step)).exists() and step not in self._moved

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
            raise NoCheckpointError(f"no checkpoints in {self.directory}{self._aside_note()}")
        if isinstance(which, bool) or (isinstance(which, float) and not which.is_integer()):
            raise ValueError(f"checkpoint={which!r}: allowed values are 'best', 'latest' or a step number "
                             f"(available: {steps})")
        if which == "latest":
            return list(reversed(steps))
        if which == "best":
            best = self.best_step()
            return ([best] if best is not None else []) + [s for s in reversed(steps) if s != best]
        try:
            s = int(which)
        except (TypeError, ValueError):
            raise ValueError(f"checkpoint={which!r}: allowed values are 'best', 'latest' or a step number "
                             f"(available: {steps})") from None
        if s not in steps:
            raise ValueError(f"checkpoint={which!r}: not in {self.directory} (available: {steps}, 'best', 'latest')")
        return [s]

    def _aside_note(self) -> str:
        """``' (set aside as damaged: checkpoints/corrupt/3; move one back to use it)'``, or ''."""
        aside = sorted(p.name for p in (self.directory / CORRUPT).glob("*")) if (self.directory / CORRUPT).is_dir() else []
        return (f" (set aside as damaged: {', '.join(f'{CORRUPT}/{n}' for n in aside)}; move one back to use it)"
                if aside else "")

    def read_step(self, step: int, *, with_data: bool = False) -> Stored:
        """Checkpoint ``step`` read once and verified (:func:`verify`)."""
        items = dict(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
        if with_data:
            items["data"] = ocp.args.JsonRestore()
        r = self.manager.restore(step, args=ocp.args.Composite(**items))
        verify(r.state, r.meta)
        return Stored(r.state, r.meta, r.data if with_data else None)

    def _readable(self, candidates: list[int], read, *, warn: bool = True):
        """THE fallback loop: ``(step, read(step))`` for each candidate that reads, in order; a damaged
        one is reported (``warn``: and set aside) and passed over. An error of the machine's state
        (permissions, memory, file handles: ``checkpoint_errors.is_damage``) is raised as it is: the
        checkpoint may be sound, and an older one is not what was asked for. A step deleted while it was
        read (a live run's retention, its folder half removed) is no damage: the warnings wait until the
        next candidate was read, then skip the steps that are gone by then."""
        failed: list[tuple[int, int, str, Path | None]] = []
        for i, s in enumerate(candidates):
            try:
                value = read(s)
            except Exception as e:  # noqa: BLE001  (an unreadable checkpoint must not stop us)
                if self._gone(s):
                    continue
                if not is_damage(e):
                    raise
                if warn:
                    failed.append((i, s, cause(e), self._set_aside(s)))
                continue
            self._warn_unreadable(failed, len(candidates))
            failed = []
            yield s, value
        self._warn_unreadable(failed, len(candidates))

    def _warn_unreadable(self, failed: list, n: int) -> None:
        for i, s, why, where in failed:
            if where is None and self._gone(s):   # deleted meanwhile (a live run's retention): nothing to report
                log.debug("checkpoint %d in %s was deleted while it was read", s, self.directory)
                continue
            log.warning("checkpoint %d in %s cannot be restored (%s); %s%s", s, self.directory, why,
                        f"moved to {where} (kept, not deleted); " if where else "",
                        "trying the next one" if i + 1 < n else "no other checkpoint to try")

    def _first_readable(self, candidates: list[int], read, *, explicit: bool, relist=None) -> tuple[int, Any]:
        """``(step, read(step))`` of the first candidate that reads. ``explicit`` (one step the caller
        asked for): its error is raised, as one CorruptCheckpointError line when the checkpoint is damaged
        (it is not set aside: the caller named it). ``relist()``: the candidates again, tried once more
        when none read and a candidate was deleted meanwhile (a live run saved newer ones)."""
        if explicit:
            try:
                return candidates[0], read(candidates[0])
            except CorruptCheckpointError:
                raise
            except Exception as e:
                if not is_damage(e):
                    raise
                raise CorruptCheckpointError(
                    f"checkpoint {candidates[0]} in {self.directory} cannot be read ({cause(e)}); name another "
                    f"step, or 'best' / 'latest' (which pass over damaged checkpoints)") from e
        for found in self._readable(candidates, read):
            return found
        if relist is not None and any(self._gone(s) for s in candidates):
            self._listing(self.manager.reload)
            return self._first_readable(relist(), read, explicit=False)
        raise NoCheckpointError(f"no readable checkpoint in {self.directory} (tried {candidates}){self._aside_note()}")

    def latest_meta(self) -> dict | None:
        """Meta of the newest checkpoint whose meta reads (None: no checkpoint)."""
        return next((m for _, m in self._readable(list(reversed(self.steps())), self.meta, warn=False)), None)

    def best_step(self) -> int | None:
        best, best_val = None, -1.0
        for step, meta in self._readable(self.steps(), self.meta):   # an unreadable meta: warned, set aside
            val = meta.get("metrics", {}).get("val_top1")
            if val is not None and val > best_val:
                best, best_val = step, val
        return best

    def restore(self, template, *, step: int | None = None) -> tuple[Any, Any, dict, int]:
        """Restore ``(state, data_state, meta, step)`` in the structure of ``template`` (a host pytree
        of the state's structure, e.g. from ``jax.eval_shape``). Default: the latest readable checkpoint;
        one that fails to read is reported, set aside, and the previous one is tried."""
        s, stored = self._first_readable([step] if step is not None else self.candidates("latest"),
                                         lambda s: self.read_step(s, with_data=True), explicit=step is not None)
        state = into(template, stored.state, where=f"checkpoint {s} in {self.directory}")
        return state, stored.data, stored.meta, s

    def read_meta(self, which: str | int = "best") -> tuple[dict, int]:
        """``(meta, step)`` of checkpoint ``which`` as :meth:`read` chooses it, without reading the state."""
        s, meta = self._first_readable(self.candidates(which), self.meta, explicit=which not in ("best", "latest"),
                                       relist=lambda: self.candidates(which))
        return meta, s

    def read(self, which: str | int = "best") -> tuple[dict, dict, int]:
        """``(state as nested dicts of numpy arrays, meta, step)`` of checkpoint ``which`` ('best',
        'latest' or a step number), read once, falling back past unreadable ones (with a warning)."""
        s, stored = self._first_readable(self.candidates(which), self.read_step,
                                         explicit=which not in ("best", "latest"), relist=lambda: self.candidates(which))
        return stored.state, stored.meta, s

    def _set_aside(self, step: int) -> Path | None:
        """Move checkpoint ``step`` to ``checkpoints/corrupt/<step>`` (``-2``, ... if taken); None when
        it stays (a reader while a training process holds the workdir, or no write access)."""
        lock = WorkdirLock(self.workdir) if self.read_only else None
        if lock is not None and not lock.try_acquire():
            return None
        try:
            target = self.directory / CORRUPT / str(step)
            k = 1
            while target.exists():
                k += 1
                target = self.directory / CORRUPT / f"{step}-{k}"
            target.parent.mkdir(exist_ok=True)
            os.rename(self.directory / str(step), target)
            self._moved.add(step)
            self.manager.reload()
            return target
        except OSError as e:
            log.debug("cannot set checkpoint %d aside: %s", step, e)
            return None
        finally:
            if lock is not None:
                lock.release()

    # ------------------------------------------------------------------ writing
    def save(self, step: int, state, *, data_state: dict, meta: dict, metrics: dict | None = None) -> bool:
        """Save asynchronously (``state``: host numpy pytree, not modified afterwards). A
        non-finite state is refused (returns False). ``metrics['val_top1']`` ranks it for 'best'.
        CheckpointWriteError if this save, or the one still in flight, cannot be written."""
        if self.read_only:
            raise RuntimeError(f"{self.directory} was opened read-only")
        if not all_finite(state):
            log.error("step %d: the train state has non-finite values; checkpoint NOT written", step)
            return False
        if step in self.manager.all_steps():
            return True
        meta = {**meta, "step": int(step), "metrics": metrics or {}, "versions": library_versions(),
                "checksums": {"crc32": checksums(state)}}
        previous = self._in_flight
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.manager.wait_until_finished()
            previous = step
            self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                            data=ocp.args.JsonSave(data_state),
                                                            meta=ocp.args.JsonSave(meta)),
                              metrics={"val_top1": metrics["val_top1"]} if metrics and "val_top1" in metrics else None,
                              force=True)
        except Exception as e:  # noqa: BLE001  (orbax and tensorstore report write errors in many types)
            raise self._write_error(previous if previous is not None else step, e) from e
        self._in_flight = step
        return True

    def record_top1(self, step: int, top1: float) -> None:
        """Rank checkpoint ``step``, saved before its evaluation was done (a signal during it), by that
        evaluation's top-1: its meta's ``metrics`` (where 'best' and the retention of the best read it)
        replaced atomically, ``eval_due`` cleared. Process 0 writes it."""
        self.wait()
        if jax.process_index() == 0:
            path = meta_file(self.directory, step)
            meta = json.loads(path.read_text())
            meta["metrics"], meta["eval_due"] = {**meta.get("metrics", {}), "val_top1": float(top1)}, False
            with written_atomically(path) as tmp:
                Path(tmp).write_text(json.dumps(meta))
        self._keep_best.top1[step] = float(top1)

    def wait(self) -> None:
        """Block until the save in flight is committed (CheckpointWriteError if it failed)."""
        try:
            self.manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001
            raise self._write_error(self._in_flight, e) from e
        self._in_flight = None

    def close(self) -> None:
        """Wait for the save in flight and release orbax's resources. A failure already raised by
        :meth:`save` / :meth:`wait` is not raised again."""
        already_raised = self._failed is not None
        try:
            self.wait()
        except CheckpointWriteError:
            if not already_raised:
                raise
        finally:
            with contextlib.suppress(Exception):
                self.manager.close()

    def _write_error(self, step: int | None, e: Exception) -> CheckpointWriteError:
        if self._failed is not None:
            return self._failed
        cause, code = write_cause(e, self.directory)
        kept = ", ".join(map(str, self.steps()))
        kept = f"the checkpoints already committed are kept as they were: {kept}" if kept else "no checkpoint was committed"
        self._failed = CheckpointWriteError(f"cannot write checkpoint {step} in {self.directory}: {cause} ({kept})")
        self._failed.errno = code
        logs.details(f"checkpoint {step}: write failed", e)
        return self._failed


def check_compatible(meta: dict | None, *, model: str, num_classes: int, workdir) -> None:
    """Refuse a workdir holding checkpoints of another architecture or class count."""
    if meta is None:
        return
    if meta.get("model") != model or int(meta.get("num_classes", -1)) != int(num_classes):
        raise WorkdirMismatchError(
            f"workdir {workdir} holds checkpoints of model {meta.get('model')!r} with {meta.get('num_classes')} "
            f"classes, but this run is {model!r} with {num_classes} classes; nothing was changed. Use another "
            f"--workdir (or move {checkpoint_dir(workdir)} and result.json away yourself to start over).")
