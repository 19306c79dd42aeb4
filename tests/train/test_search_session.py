"""``train.search`` end to end on the offline digits: trials side by side, trials.csv, each trial's
metrics, the best trial's checkpoint restored and evaluated, figures, ranking, resume and extension;
a group too large for the memory given. Trains LeNet-5 for a few epochs: integration."""
import csv
import json

import pytest

from helpers import quick, snapshot

SPACE = ["optimizer.learning_rate=loguniform(1e-4, 3e-2)", "optimizer.weight_decay=uniform(0, 1e-3)"]
pytestmark = pytest.mark.integration


def _config():
    return quick(num_epochs=2.0, log_every_steps=31)


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_search_end_to_end_resume_and_extend(tmp_path, capsys):
    import train
    from train.search import report, space

    r = train.search(_config(), SPACE, tmp_path, method="random", trials=4, seed=3)
    out = capsys.readouterr().out
    assert "trials 0, 1, 2, 3: training side by side" in out and out.count("training side by side") == 1
    with open(tmp_path / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r_["trial"], r_["status"], r_["steps"]) for r_ in rows] == [(str(i), "complete", "124") for i in range(4)]
    assert list(rows[0]) == ["trial", *[e.split("=")[0] for e in SPACE], "val_top1", "val_loss", "steps", "seconds",
                             "status"]
    for i in range(4):
        lines = _lines(tmp_path / "trials" / str(i) / "metrics.jsonl")
        assert [x["step"] for x in lines if x["split"] == "eval"] == [62, 124]
        assert [x["step"] for x in lines if x["split"] == "train"] == [31, 62, 93, 124]
    # the best trial: its checkpoint holds its config's values and evaluates to its score
    best = r.best
    assert best == max(r.table, key=lambda x: x["val_top1"]) and r.best_dir == tmp_path / "trials" / str(best["trial"])
    _, _, meta, step = train.load(tmp_path / "best")
    assert step == 124 and meta["config"]["optimizer"]["learning_rate"] == best["optimizer.learning_rate"]
    assert meta["config"]["optimizer"]["weight_decay"] == best["optimizer.weight_decay"]
    assert train.evaluate(tmp_path / "best", plot=False)["top1"] == pytest.approx(best["val_top1"], abs=1e-6)
    assert report.ranking(r.table, space.parse(SPACE, _config())).splitlines()[1].split()[1] == str(best["trial"])
    assert f"best: trial {best['trial']}" in out
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "layout.png", "learning_curves.png", "val_top1_vs_optimizer.learning_rate.png",
        "val_top1_vs_optimizer.weight_decay.png"]
    # the same command again: nothing re-runs; one more trial: only that one runs
    before = {i: snapshot(tmp_path / "trials" / str(i)) for i in range(4)}
    again = train.search(_config(), SPACE, tmp_path, method="random", trials=4, seed=3)
    assert "training side by side" not in capsys.readouterr().out and again.table == r.table
    more = train.search(_config(), SPACE, tmp_path, method="random", trials=5, seed=3)
    assert "trials 4: training side by side" in capsys.readouterr().out
    assert [x["trial"] for x in more.table] == [0, 1, 2, 3, 4] and more.table[:4] == r.table
    assert all(snapshot(tmp_path / "trials" / str(i)) == before[i] for i in range(4))


def test_a_group_too_large_for_the_memory_is_reported_and_its_trials_kept(tmp_path):
    import train
    from train.search import group, space, study

    with pytest.raises(group.GroupTooLargeError, match=r"^a group of 3 trials needs [\d.]+ GiB per device, more than the "
                                                       r"0\.00 GiB available; not even one trial fits$"):
        train.search(_config(), SPACE, tmp_path, method="random", trials=3, memory_limit=1)
    ident = study.identity("random", space.parse(SPACE, _config()), _config())
    s = study.Trials(study.open_study(study.storage_url(None, tmp_path), "search", ident), None, "random", 0, 3)
    assert s.remaining() == 3 and all(t.state.name == "WAITING" for t in s.all())


def test_later_groups_of_one_structure_reuse_the_first_groups_programs(tmp_path, monkeypatch):
    """``--parallel-trials 1``: the search built and compiled a group per trial (~10 s each for LeNet-5
    on 2 CPU cores); groups of one structure differ only in the step's inputs, so the second trial
    runs the programs the first compiled, and ends exactly as the same trial does as a search's first."""
    import train
    from train import setup
    from train.search import group

    calls = {"compile": 0, "fresh": 0, "build": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(group.Group, "compile", counted("compile", group.Group.compile))
    monkeypatch.setattr(setup.Run, "fresh_state", counted("fresh", setup.Run.fresh_state))
    monkeypatch.setattr(setup, "build", counted("build", setup.build))
    config = quick(**{"num_train_steps": 4, "log_every_steps": 2, "schedule.warmup_epochs": 0.0})
    two = train.search(config, ["optimizer.learning_rate=choice(1e-3, 1e-2)"], tmp_path / "two", method="grid",
                       parallel_trials=1, plots=False)
    assert calls == {"compile": 1, "fresh": 1, "build": 1}
    train.search(config, ["optimizer.learning_rate=choice(1e-3)"], tmp_path / "first", method="grid", plots=False)
    second, first = (tmp_path / "two" / "trials" / "1", tmp_path / "first" / "trials" / "0")
    assert [(r["trial"], r["optimizer.learning_rate"]) for r in two.table] == [(0, 1e-2), (1, 1e-3)]   # the grid's order
    assert (second / "metrics.jsonl").read_text() == (first / "metrics.jsonl").read_text()
