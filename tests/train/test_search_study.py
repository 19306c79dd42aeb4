"""The study: its identity, a fixed number of trials handed out across processes, samples that are a
function of the trial number, and the trials of dead processes given back. Optuna's own storage
(SQLite in tmp_path); no training."""
import os
import socket
import subprocess
import sys

import pytest

from helpers import quick, snapshot

SPACE = ["optimizer.learning_rate=loguniform(1e-4, 1e-1)", "optimizer.weight_decay=uniform(0, 1e-3)"]


def _space(entries=SPACE, method="random"):
    from train.search import space

    return space.parse(entries, quick(), method)


def _trials(tmp_path, total, method="random", entries=SPACE, seed=0, name="s"):
    from train.search import study

    s = _space(entries, method)
    tmp_path.mkdir(parents=True, exist_ok=True)
    opened = study.open_study(study.storage_url(None, tmp_path), name, study.identity(method, s, quick()))
    return study.Trials(opened, s, method, seed, total)


def test_another_search_is_refused_and_nothing_changes(tmp_path):
    from train.search import study

    _trials(tmp_path, 4).ask(2)
    before = snapshot(tmp_path)
    other = _space(SPACE[:1])
    for ident, why in [(study.identity("random", other, quick()), r"its space is \['optimizer.learning_rate=.*\], "
                                                                   r"this one"),
                       (study.identity("tpe", _space(), quick()), r"its method is 'random', this one 'tpe'"),
                       (study.identity("random", _space(), quick(num_epochs=3.0)),
                        r"its config differs in num_epochs \(4\.0 there, 3\.0 here\)")]:
        with pytest.raises(study.StudyMismatchError, match=r"study 's' in sqlite:///.* holds another search \(" + why):
            study.open_study(study.storage_url(None, tmp_path), "s", ident)
    assert snapshot(tmp_path) == before
    # the searched fields' own values in the config do not matter
    study.open_study(study.storage_url(None, tmp_path), "s",
                     study.identity("random", _space(), quick(**{"optimizer.learning_rate": 0.5})))


@pytest.mark.parametrize("url, said", [
    ("mysql://127.0.0.1/db", "Failed to import DB access module"),       # no driver installed here
    ("foo://bar", "Can't load plugin: sqlalchemy.dialects:foo"),         # a scheme SQLAlchemy does not know
    ("sqlite:///{tmp}/no/such/folder/s.db", r"\(sqlite3.OperationalError\) unable to open database file"),
    ("{tmp}/no/such/folder/s.journal", "No such file or directory"),
    ("{tmp}", "Is a directory"),
])
def test_a_storage_that_cannot_be_opened_is_one_line_naming_the_argument(tmp_path, url, said):
    """Once Optuna's or SQLAlchemy's message alone (or, for an unknown scheme, a traceback's last line)."""
    from train.search import study

    url = url.format(tmp=tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=rf"^--storage {url}: {said}.* \(default WORKDIR/study.db; allowed: "
                                         r"sqlite:///PATH, postgresql://\.\.\. or mysql://\.\.\. with its driver "
                                         r"installed, or a journal file's path\)$") as e:
        study.make_storage(url)
    assert "\n" not in str(e.value) and snapshot(tmp_path) == before


def test_a_workdir_that_is_a_file_is_one_line(tmp_path):
    from train.search import session

    (tmp_path / "w").write_text("mine")
    with pytest.raises(OSError, match=r"^cannot write in the workdir .*/w: it is a file, not a folder; choose another "
                                      r"--workdir$"):
        session.search(quick(), SPACE, tmp_path / "w", trials=1)
    assert (tmp_path / "w").read_text() == "mine"


def test_the_study_runs_exactly_its_number_of_trials(tmp_path):
    a, b = _trials(tmp_path, 5), _trials(tmp_path, 5)   # two processes on one study
    got = a.ask(3) + b.ask(3) + a.ask(3)
    assert sorted(t.number for t, _ in got) == [0, 1, 2, 3, 4]
    assert a.remaining() == b.remaining() == 0 and len(a.all()) == 5


def test_a_trial_asked_too_late_is_voided(tmp_path, monkeypatch):
    """Two processes asking for the last trial at once: the later number is voided, not run."""
    a, b = _trials(tmp_path, 2), _trials(tmp_path, 2)
    a.ask(2)
    monkeypatch.setattr(b, "remaining", lambda: 1)  # b counted before a's trials were in
    assert b.ask(1) == []
    assert [t.number for t in a.all()] == [0, 1]
    assert len(a.study.get_trials()) == 3


def test_samples_are_a_function_of_the_trial_number(tmp_path):
    """The same seed gives trial n the same values whoever asks; other trials get other values."""
    one = {t.number: v for t, v in _trials(tmp_path / "a", 4, seed=7).ask(4)}
    a, b = _trials(tmp_path / "b", 4, seed=7), _trials(tmp_path / "b", 4, seed=7)
    two = {t.number: v for t, v in a.ask(1) + b.ask(2) + a.ask(1)}
    assert one == two
    assert len({v["optimizer.learning_rate"] for v in one.values()}) == 4
    assert {t.number: v for t, v in _trials(tmp_path / "c", 4, seed=8).ask(4)} != one


def test_a_grid_gives_each_point_once_across_processes(tmp_path):
    grid = ["optimizer.learning_rate=loggrid(1e-4, 1e-2, 3)", "optimizer.name=choice(sgd, adam)"]
    a, b = (_trials(tmp_path, 6, "grid", grid) for _ in range(2))
    got = a.ask(2) + b.ask(3) + a.ask(5)
    points = {(v["optimizer.learning_rate"], v["optimizer.name"]) for _, v in got}
    assert len(got) == 6 and len(points) == 6
    from optuna.trial import TrialState
    for t, _ in got:   # telling a grid trial outside study.optimize works
        (a if t.number in a.mine else b).finish(t, TrialState.COMPLETE, 0.5, {})


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_trials_of_a_dead_process_run_again(tmp_path):
    from optuna.trial import TrialState
    from train.search import study

    dead = _trials(tmp_path, 3)
    (t0, v0), (t1, v1) = dead.ask(2)
    dead.finish(t0, TrialState.COMPLETE, 0.9, {})
    dead.study._storage.set_trial_system_attr(t1._trial_id, study.OWNER,
                                              {"host": socket.gethostname(), "pid": _dead_pid()})
    alive = _trials(tmp_path, 3)
    assert alive.reclaim() == 1
    assert alive.reclaim() == 0   # once only
    assert [t.number for t in alive.all()] == [0, 2]   # trial 1 voided, its parameters waiting
    again = alive.ask(5)
    assert [v for _, v in again][0] == v1 and len(again) == 2   # the retry, then the third trial
    assert alive.remaining() == 0


@pytest.mark.parametrize("owner, beat, alive", [
    ({"host": socket.gethostname(), "pid": None}, None, False),          # this host, pid gone
    ({"host": "elsewhere", "pid": 1}, 0.0, False),                        # no heartbeat for ages
    ({"host": "elsewhere", "pid": 1}, "now", True),
])
def test_alive(owner, beat, alive):
    import time
    from train.search import study

    if owner["pid"] is None:
        owner = {**owner, "pid": _dead_pid()}
    assert study._alive(owner, time.time() if beat == "now" else beat, None) is alive


def test_tpe_samples_from_the_finished_trials(tmp_path):
    """TPE (after Optuna's 10 random start-up trials) proposes from the history: trial 11 of a study
    whose score grows with the learning rate lies in the space, sampled by Optuna's TPESampler."""
    import optuna
    from optuna.trial import TrialState

    t = _trials(tmp_path, 12, "tpe")
    for trial, values in t.ask(11):
        t.finish(trial, TrialState.COMPLETE, float(values["optimizer.learning_rate"]), {})
    [(trial, values)] = t.ask(1)
    assert isinstance(t.study.sampler, optuna.samplers.TPESampler)
    assert 1e-4 <= values["optimizer.learning_rate"] <= 1e-1 and 0 <= values["optimizer.weight_decay"] <= 1e-3


def test_pruners_are_optunas_with_given_resources():
    import optuna

    from train.search import study

    assert isinstance(study.make_pruner(None, 4), optuna.pruners.NopPruner)
    assert isinstance(study.make_pruner("halving", 4), optuna.pruners.SuccessiveHalvingPruner)
    hyperband = study.make_pruner("hyperband", 4)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner) and hyperband._max_resource == 4
    with pytest.raises(ValueError, match="--pruner 'median': allowed halving, hyperband"):
        study.make_pruner("median", 4)


def test_another_study_in_a_workdir_with_trial_folders_is_refused_before_anything_is_written(tmp_path):
    """Trial folders are numbered per study: a second study (``--study other``, as the mismatch error
    suggests) once reused trials/0.., appending to their metrics and linking ``best`` to the first
    study's checkpoint. An emptied study.db once started the search over in the same folders."""
    from train.search import session, study

    _trials(tmp_path, 2, name="search").ask(1)
    study.claim_trials(tmp_path, "search", None)
    (tmp_path / "trials" / "0").mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(study.StudyMismatchError, match=r"^.*/trials holds the trials of study 'search'; trial "
                                                       r"folders are numbered per study, so study 'other' would "
                                                       r"reuse them; nothing was changed\. Use another --workdir$"):
        session.search(quick(), SPACE, tmp_path, trials=1, study="other")
    with pytest.raises(study.StudyMismatchError, match="holds the trials of study 'search'"):
        session.search(quick(), SPACE, tmp_path, trials=1, storage=f"sqlite:///{tmp_path}/elsewhere.db")
    assert snapshot(tmp_path) == before
    # the default storage spelled out is the default: past the check, refused only as another search
    with pytest.raises(study.StudyMismatchError, match=r"^study 'search' in .* holds another search"):
        session.search(quick(), SPACE[:1], tmp_path, trials=1, storage=f"sqlite:///{tmp_path.absolute()}/study.db")
    assert study.is_default_storage(f"sqlite:///{os.path.relpath(tmp_path)}/study.db", tmp_path)
    assert not study.is_default_storage(f"sqlite:///{tmp_path}/other.db", tmp_path)
    (tmp_path / "study.db").write_bytes(b"")   # emptied (a full disk, a failed copy)
    with pytest.raises(study.StudyMismatchError, match=r"^study 'search' in sqlite:///.*/study\.db has no trials, "
                                                       r"but .*/trials holds its trial folders \(was its database "
                                                       r"emptied or replaced\?\); nothing was changed"):
        session.search(quick(), SPACE, tmp_path, trials=1)
    assert (tmp_path / "study.db").read_bytes() == b""
    # trial folders of a version without trials/.study, and no study: refused the same way
    (tmp_path / "study.db").unlink()
    (tmp_path / "trials" / ".study").unlink()
    with pytest.raises(study.StudyMismatchError, match="has no trials, but .* holds its trial folders"):
        session.search(quick(), SPACE, tmp_path, trials=1)


def test_the_same_space_in_another_order_is_the_same_search(tmp_path):
    from train.search import study

    _trials(tmp_path, 2).ask(1)
    study.open_study(study.storage_url(None, tmp_path), "s", study.identity("random", _space(SPACE[::-1]), quick()))


def test_an_sqlite_file_given_as_a_path_says_how_to_name_it(tmp_path):
    from train.search import study

    _trials(tmp_path, 2)
    with pytest.raises(ValueError, match=rf"^--storage {tmp_path}/study\.db: an SQLite database, not a journal "
                                         rf"file; give it as sqlite:///{tmp_path}/study\.db$"):
        study.make_storage(str(tmp_path / "study.db"))


@pytest.mark.parametrize("kwargs, message", [
    ({"memory_limit": 0}, r"^memory_limit=0: bytes a device may use for a group, an integer > 0$"),
    ({"study": " "}, r"^--study ' ': give a name \(default 'search'\)$"),
])
def test_search_arguments_are_checked_before_the_study_is_opened(tmp_path, kwargs, message):
    from train.search import session

    with pytest.raises(ValueError, match=message):
        session.search(quick(), SPACE, tmp_path / "w", trials=1, **kwargs)
    assert not (tmp_path / "w").exists()


def test_a_search_where_no_trial_completed_says_so(tmp_path, capsys):
    import optuna
    from optuna.trial import TrialState

    from train.search import session

    handed = _trials(tmp_path, 2, name="search")
    s = _space()
    for lr, state in [(1e-2, TrialState.FAIL), (1e-3, TrialState.PRUNED)]:
        handed.study.add_trial(optuna.trial.create_trial(
            params={"optimizer.learning_rate": lr, "optimizer.weight_decay": 0.0}, distributions=s.distributions(),
            state=state, user_attrs={"val_top1": 0.1, "val_loss": 2.3, "steps": 7, "seconds": 1.0}))
    r = session.finish(handed, s, tmp_path, "random", "url", "search", None, plots=False)
    out = capsys.readouterr().out
    assert r.best is None and "no trial completed (1 failed, 1 pruned): no best trial to link" in out
    assert [line.split()[0] for line in out.splitlines()[1:3]] == ["-", "-"]   # listed, not ranked


def test_a_storage_file_that_is_not_a_journal_is_refused_unchanged(tmp_path):
    """Optuna appended its journal records to a user's text file, then failed with a bare JSON error."""
    from train.search import study

    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with pytest.raises(ValueError, match=rf"^--storage {notes}: an existing file that is not an Optuna journal \(its "
                                         r"first line is no journal record\); nothing was written"):
        study.make_storage(str(notes))
    assert notes.read_text() == "my notes\n"
    journal = tmp_path / "s.journal"
    study.make_storage(str(journal))   # a new journal, then the same one again
    optuna_study = __import__("optuna").create_study(storage=study.make_storage(str(journal)), study_name="x")
    assert optuna_study.study_name == "x" and journal.stat().st_size > 0
    study.make_storage(str(journal))
