"""Optuna glue: the study's storage, its identity, samplers and pruners, and handing out trials.

Optuna samples (RandomSampler, GridSampler, TPESampler), prunes (SuccessiveHalvingPruner,
HyperbandPruner), keeps the books and stores them: SQLite ``WORKDIR/study.db`` by default, any
Optuna storage URL (``postgresql://...``, ``mysql://...``), or a journal file (any other path). What
this module adds:

* **Identity**: the study remembers its search (method, space, the config without the searched
  fields) in a user attribute; opening it for another search is refused before anything is written
  (:class:`StudyMismatchError`).
* **A fixed number of trials, split between processes**: ``--trials N`` counts every trial of the
  study. Trial numbers are handed out by the storage, so several processes on one study ask in
  turn, and a trial whose number comes too late (two processes asked for the last one at once) is
  voided at once: every trial runs exactly once, N in all.
* **Samples are a function of the trial number**: each trial is sampled by a sampler seeded with
  ``(seed, trial number)`` (GridSampler: grid point = trial number), so neither a second process nor
  a resumed search repeats a configuration.
* **One study per workdir's trial folders**: trial folders are ``WORKDIR/trials/<trial number>`` and
  numbers restart in each study, so ``trials/.study`` names the study (and a ``--storage`` other than
  the default) they belong to. Another study there, or this study missing from its database (emptied
  or replaced), is refused before anything is written (:func:`check_trials_owner`).
* **Resume**: each trial records its owner (host, pid) and a heartbeat. A RUNNING trial whose
  process is gone (same host: the pid is dead; elsewhere: no heartbeat for ``GRACE_S``) is voided
  and its parameters enqueued again, so a killed search re-runs exactly its unfinished trials;
  finished trials are never re-run. Voided trials stay in the storage (state FAIL, system attribute
  ``search:void``) and are left out of every count and table.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

log = logging.getLogger("train")

METHODS = ("grid", "random", "tpe")
PRUNERS = ("halving", "hyperband")
HEARTBEAT_S = 60.0
GRACE_S = 600.0
VOID, OWNER, BEAT = "search:void", "search:owner", "search:beat"
IDENTITY = "search"


class StudyMismatchError(ValueError):
    """The study (workdir / --study / --storage) holds another search."""


# ----------------------------------------------------------------------------- storage and identity

def storage_url(storage: str | None, workdir: Path) -> str:
    return storage or f"sqlite:///{Path(workdir).absolute() / 'study.db'}"


def _sqlite_file(url: str) -> str | None:
    """The database file of an ``sqlite:///PATH`` URL, absolute (None for other storages)."""
    return os.path.abspath(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None


def is_default_storage(url: str, workdir: Path) -> bool:
    """``url`` names WORKDIR/study.db (absolute or relative to the current folder)."""
    return _sqlite_file(url) == os.path.abspath(Path(workdir) / "study.db")


def make_storage(url: str):
    """An Optuna storage: a database URL (``sqlite:///...``, ``postgresql://...``) or a journal file path.
    One ValueError line naming ``--storage`` when it cannot be opened (a missing driver, a URL scheme
    SQLAlchemy does not know, a folder that does not exist)."""
    if "://" not in url and Path(url).is_file():
        with open(url, "rb") as f:
            head = f.read(16)
            if head == b"SQLite format 3\0":
                raise ValueError(f"--storage {url}: an SQLite database, not a journal file; give it as "
                                 f"sqlite:///{Path(url).absolute()}")
            if head and not _journal_record((head + f.readline()).split(b"\n")[0]):   # records were appended to it
                raise ValueError(f"--storage {url}: an existing file that is not an Optuna journal (its first line "
                                 f"is no journal record); nothing was written: name a new file, or sqlite:///PATH")
    try:
        if "://" in url:
            kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        from optuna.storages.journal import JournalFileBackend  # noqa: PLC0415
        return optuna.storages.JournalStorage(JournalFileBackend(str(url)))
    except Exception as e:  # noqa: BLE001  (ImportError, OSError or SQLAlchemy's own: one line whichever)
        said = getattr(e, "strerror", None) or (str(e).splitlines() or [type(e).__name__])[0]
        raise ValueError(f"--storage {url}: {said} (default WORKDIR/study.db; allowed: sqlite:///PATH, "
                         f"postgresql://... or mysql://... with its driver installed, or a journal file's path)") from None


def _journal_record(line: bytes) -> bool:
    """Whether ``line`` is a record of Optuna's journal file (a JSON object with an ``op_code``)."""
    try:
        return "op_code" in json.loads(line)
    except (ValueError, TypeError):
        return False


def identity(method: str, space, config) -> dict:
    """What makes a search the same search: method, space, and the config without the searched fields."""
    flat = json.loads(config.to_json_best_effort())
    for path in space.paths:
        node, parts = flat, path.split(".")
        for key in parts[:-1]:
            node = node.get(key, {})
        node.pop(parts[-1], None)
    return json.loads(json.dumps({"method": method, "space": space.texts(), "config": flat}, sort_keys=True))


def _difference(old: dict, new: dict) -> str:
    if old.get("method") != new["method"]:
        return f"its method is {old.get('method')!r}, this one {new['method']!r}"
    if old.get("space") != new["space"]:
        return f"its space is {old.get('space')}, this one {new['space']}"
    a, b = _flat(old.get("config", {})), _flat(new["config"])
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return "its config differs in " + ", ".join(f"{k} ({a.get(k)!r} there, {b.get(k)!r} here)" for k in keys[:3])


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _same(old: dict, new: dict) -> bool:
    """Identities equal up to the order of the space's entries (``--space a --space b`` is ``b``, ``a``)."""
    return {**old, "space": sorted(old.get("space", []))} == {**new, "space": sorted(new["space"])}


# ----------------------------------------------------------------------------- the trial folders' study

OWNER_FILE = Path("trials") / ".study"


def trials_owner(workdir: Path) -> dict | None:
    """What ``WORKDIR/trials/.study`` records: ``{"study": name, "storage": URL or None (the default)}``."""
    try:
        return json.loads((Path(workdir) / OWNER_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ValueError(f"{Path(workdir) / OWNER_FILE}: unreadable ({e}); it names the study whose trials are in "
                         f"{Path(workdir) / 'trials'}") from None


def _trial_folders(workdir: Path) -> int:
    folder = Path(workdir) / "trials"
    return sum(p.name.isdigit() for p in folder.iterdir()) if folder.is_dir() else 0


def check_trials_owner(workdir: Path, name: str, storage: str | None) -> str | None:
    """Refuse a workdir whose trial folders belong to another study (StudyMismatchError, nothing written).
    What ``open_study`` must then find (``must_exist``): None, a new study may be created; 'study',
    ``trials/.study`` names it, so it must exist; 'trials', trial folders of a version without
    ``trials/.study``, so it must exist and hold trials."""
    owner = trials_owner(workdir)
    if owner is not None and (owner.get("study"), owner.get("storage")) != (name, storage):
        where = f" in {owner['storage']}" if owner.get("storage") else ""
        raise StudyMismatchError(
            f"{Path(workdir) / 'trials'} holds the trials of study {owner.get('study')!r}{where}; trial folders are "
            f"numbered per study, so study {name!r} would reuse them; nothing was changed. Use another --workdir")
    return "study" if owner is not None else "trials" if _trial_folders(workdir) else None


def claim_trials(workdir: Path, name: str, storage: str | None) -> None:
    """Record the study that the trial folders belong to (once)."""
    if trials_owner(workdir) is None:
        from zoo.files import written_atomically  # noqa: PLC0415

        with written_atomically(Path(workdir) / OWNER_FILE) as tmp:
            Path(tmp).write_text(json.dumps({"study": name, "storage": storage}) + "\n")


def open_study(url: str, name: str, ident: dict, *, pruner=None, must_exist: str | None = None,
               workdir: Path | None = None) -> optuna.Study:
    """Load the study ``name`` (or create it) and check it is this search; nothing is written when it is not.
    ``must_exist`` (:func:`check_trials_owner`): ``workdir``'s trial folders are this study's, so a missing
    study (for 'trials': or one without trials) is a database emptied or replaced: refused."""
    lost = StudyMismatchError(
        f"study {name!r} in {url} has no trials, but {Path(workdir or '.') / 'trials'} holds its trial folders (was "
        f"its database emptied or replaced?); nothing was changed. Restore the database, or use another --workdir")
    sqlite_file = _sqlite_file(url)
    if must_exist and sqlite_file is not None and not (os.path.isfile(sqlite_file) and os.path.getsize(sqlite_file)):
        raise lost   # deleted or emptied: refused before SQLite writes a new schema into it
    storage = make_storage(url)
    try:
        study = optuna.load_study(study_name=name, storage=storage, pruner=pruner)
    except KeyError:
        if must_exist:
            raise lost from None
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize", pruner=pruner,
                                    load_if_exists=True)
    if must_exist == "trials" and not study.get_trials(deepcopy=False):
        raise lost
    old = study.user_attrs.get(IDENTITY)
    if old is None:
        study.set_user_attr(IDENTITY, ident)
    elif not _same(old, ident):
        raise StudyMismatchError(f"study {name!r} in {url} holds another search ({_difference(old, ident)}); "
                                 f"nothing was changed. Use another --workdir or --study")
    return study


def make_pruner(kind: str | None, evaluations: int | None):
    """Optuna's pruner for ``--prune KIND``, in units of evaluations (a trial reports its validation
    top-1 at each). Resources are given, not 'auto': Optuna estimates 'auto' from the first finished
    trial, and the trials of a group all finish together."""
    if kind is None:
        return optuna.pruners.NopPruner()
    if kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=evaluations or "auto")
    raise ValueError(f"--pruner {kind!r}: allowed {', '.join(PRUNERS)}")


def _sampler(method: str, space, seed: int, number: int):
    s = int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, number]).generate_state(1)[0])
    if method == "random":
        return optuna.samplers.RandomSampler(seed=s)
    if method == "tpe":
        return optuna.samplers.TPESampler(seed=s, constant_liar=True)
    raise ValueError(f"--method {method!r}: allowed {', '.join(METHODS)}")


def _suggest(trial: optuna.Trial, p):
    if p.values is not None:
        return trial.suggest_categorical(p.path, p.values)
    if p.kind == "int":
        return trial.suggest_int(p.path, *p.args)
    return trial.suggest_float(p.path, *p.args, log=p.log)


# ----------------------------------------------------------------------------- handing out trials

def _alive(owner: dict | None, beat: float | None, start) -> bool:
    if owner and owner.get("host") == socket.gethostname():
        try:
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    last = beat if beat is not None else (start.timestamp() if start is not None else 0.0)
    return time.time() - last < GRACE_S


class Trials:
    """The trials of one study for one process: ``ask`` hands out up to k new ones, ``reclaim`` voids
    and re-enqueues those of dead processes, ``finish`` tells the result."""

    def __init__(self, study: optuna.Study, space, method: str, seed: int, total: int):
        self.study, self.space, self.method, self.seed, self.total = study, space, method, seed, total
        self.grid = optuna.samplers.GridSampler(space.grid(), seed=seed) if method == "grid" else None
        self.owner = {"host": socket.gethostname(), "pid": os.getpid()}
        self.mine: dict[int, optuna.Trial] = {}

    def all(self) -> list:
        """The study's trials, voided ones left out, by number."""
        return [t for t in self.study.get_trials(deepcopy=False) if VOID not in t.system_attrs]

    def reclaim(self) -> int:
        """Void the RUNNING trials of processes that are gone and enqueue their parameters again."""
        n = 0
        for t in self.all():
            if t.state != TrialState.RUNNING or t.number in self.mine:
                continue
            if _alive(t.system_attrs.get(OWNER), t.system_attrs.get(BEAT), t.datetime_start):
                continue
            if self._void(t._trial_id, "interrupted"):
                self.study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
                log.warning("trial %d was left running by a process that is gone: it runs again", t.number)
                n += 1
        return n

    def _void(self, trial_id: int, why: str) -> bool:
        storage = self.study._storage
        try:  # the mark first: a finished trial takes no more attributes
            storage.set_trial_system_attr(trial_id, VOID, why)
            return storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False  # another process got there first

    def remaining(self) -> int:
        trials = self.all()
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        return max(0, self.total - len(trials)) + waiting

    def ask(self, k: int) -> list[tuple[optuna.Trial, dict]]:
        """Up to ``k`` new trials for this process, each with its ``{path: value}``."""
        out = []
        for _ in range(min(k, self.remaining())):
            if self.grid:  # its before_trial gives each trial an unvisited grid point, drawn from the seed
                self.study.sampler = self.grid
            trial = self.study.ask()
            storage = self.study._storage
            storage.set_trial_system_attr(trial._trial_id, OWNER, self.owner)
            storage.set_trial_system_attr(trial._trial_id, BEAT, time.time())
            before = [t for t in self.all() if t.number < trial.number]
            if len(before) >= self.total:  # another process took the last one at the same time
                self._void(trial._trial_id, "surplus")
                break
            self.study.sampler = self.grid or _sampler(self.method, self.space, self.seed, trial.number)
            self.mine[trial.number] = trial
            out.append((trial, {p.path: _suggest(trial, p) for p in self.space.params}))
        return out

    def finish(self, trial: optuna.Trial, state: TrialState, value: float | None, attrs: dict) -> None:
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        # GridSampler.after_trial calls study.stop(), which only works inside study.optimize: tell
        # through a sampler without one (the grid point is already recorded in the trial)
        self.study.sampler = optuna.samplers.RandomSampler() if self.grid else self.study.sampler
        self.study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        self.mine.pop(trial.number, None)

    def give_back(self) -> None:
        """Interrupted: void this process's unfinished trials and enqueue them again."""
        for number, trial in list(self.mine.items()):
            if self._void(trial._trial_id, "interrupted"):
                self.study.enqueue_trial(trial.params, user_attrs={"retry_of": number})
            self.mine.pop(number)

    def heartbeat(self) -> "Heartbeat":
        return Heartbeat(self)


class Heartbeat:
    """While open, records this process's running trials as alive every ``HEARTBEAT_S`` seconds."""

    def __init__(self, trials: Trials):
        self.trials, self.stop = trials, threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self):
        while not self.stop.wait(HEARTBEAT_S):
            for trial in list(self.trials.mine.values()):
                try:
                    self.trials.study._storage.set_trial_system_attr(trial._trial_id, BEAT, time.time())
                except Exception as e:  # noqa: BLE001  (a finished trial, a busy database: beat again later)
                    log.debug("heartbeat of trial %d: %s", trial.number, e)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
