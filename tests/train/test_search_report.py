"""What a search writes: trials.csv, the ranking, the best link, the figures, and the notes' layout
of grid vs random trials. Built from Optuna trials made by hand; no training."""
import csv
import json

import numpy as np
import pytest

from helpers import quick

SPACE = ["optimizer.learning_rate=loguniform(1e-4, 1e-1)", "optimizer.weight_decay=uniform(0, 1e-3)"]


def _space(entries=SPACE, method="random"):
    from train.search import space

    return space.parse(entries, quick(), method)


def _trial(number, lr, wd, top1, state="COMPLETE", steps=124):
    import optuna
    from optuna.trial import TrialState

    s = _space()
    t = optuna.trial.create_trial(
        params={"optimizer.learning_rate": lr, "optimizer.weight_decay": wd}, distributions=s.distributions(),
        value=top1 if state == "COMPLETE" else None, state=getattr(TrialState, state),
        user_attrs={"val_top1": top1, "val_loss": 1 - top1, "steps": steps, "seconds": 12.5, "steps_per_epoch": 62},
        intermediate_values={1: top1})
    t.number = number
    return t


TRIALS = [(0, 1e-3, 1e-4, 0.95), (1, 3e-2, 5e-4, 0.97), (2, 1e-4, 9e-4, 0.60, "PRUNED", 62)]


def test_trials_csv_has_a_row_per_trial_and_the_searched_fields(tmp_path):
    from train.search import report

    trials = [_trial(*t) for t in TRIALS]
    table = report.rows(trials, _space())
    path = report.write_csv(table, _space(), tmp_path / "trials.csv")
    with open(path) as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == ["trial", "optimizer.learning_rate", "optimizer.weight_decay", "val_top1", "val_loss",
                            "steps", "seconds", "status"]
    assert [(r["trial"], r["status"], r["steps"]) for r in got] == [("0", "complete", "124"), ("1", "complete", "124"),
                                                                     ("2", "pruned", "62")]
    assert float(got[1]["optimizer.learning_rate"]) == 3e-2 and float(got[1]["val_top1"]) == 0.97
    assert report.best_row(table)["trial"] == 1


def test_ranking_puts_the_best_first(tmp_path):
    from train.search import report

    text = report.ranking(report.rows([_trial(*t) for t in TRIALS], _space()), _space())
    lines = text.splitlines()
    assert lines[0].split() == ["rank", "trial", "optimizer.learning_rate", "optimizer.weight_decay", "val_top1",
                                "val_loss", "status"]
    assert [line.split()[1] for line in lines[1:]] == ["1", "0", "2"]
    assert lines[1].split()[4] == "0.9700"
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "-"]   # a pruned trial is listed, not ranked


def test_ties_go_to_the_lowest_trial_number_and_pruned_trials_never_rank_above_complete_ones():
    """The search once checkpointed the last of two tied trials and reported the first: no best link."""
    from train.search import report

    table = report.rows([_trial(0, 1e-3, 1e-4, 0.75), _trial(1, 2e-3, 1e-4, 0.74), _trial(2, 3e-3, 1e-4, 0.75),
                         _trial(3, 1e-4, 1e-4, 0.90, "PRUNED", 62)], _space())
    assert report.best_row(table)["trial"] == 0
    assert max([(0.75, 2), (0.75, 0), (0.74, 1)], key=lambda d: report.best_key(*d)) == (0.75, 0)
    lines = report.ranking(table, _space()).splitlines()[1:]
    assert [(line.split()[0], line.split()[1]) for line in lines] == [("1", "0"), ("2", "2"), ("3", "1"), ("-", "3")]


def test_best_link_points_at_the_trial_and_leaves_a_users_best_alone(tmp_path):
    from train.search import report

    (tmp_path / "trials" / "3" / "checkpoints").mkdir(parents=True)
    (tmp_path / "trials" / "5" / "checkpoints").mkdir(parents=True)
    assert report.link_best(tmp_path, 3) is None        # linked: nothing to say
    assert (tmp_path / "best").resolve() == (tmp_path / "trials" / "3").resolve()
    report.link_best(tmp_path, 5)
    assert (tmp_path / "best").resolve() == (tmp_path / "trials" / "5").resolve()
    assert report.link_best(tmp_path, 4).startswith(f"no checkpoint in {tmp_path / 'trials' / '4'} ")
    assert (tmp_path / "best").resolve() == (tmp_path / "trials" / "5").resolve()
    (tmp_path / "best").unlink()
    (tmp_path / "best").mkdir()
    assert report.link_best(tmp_path, 3) == (f"{tmp_path / 'best'} is not the search's link (left alone); the "
                                             f"checkpoint is in {tmp_path / 'trials' / '3'}")
    assert (tmp_path / "best").is_dir()


def test_the_other_layout_of_nine_trials():
    """The notes' picture: nine grid trials try three values of each parameter, nine random ones nine."""
    from train.search import report

    grid = report.other_layout(_space(), "random", 9)
    assert grid.shape == (9, 2) and len(np.unique(grid[:, 0])) == 3 and len(np.unique(grid[:, 1])) == 3
    np.testing.assert_allclose(np.unique(grid[:, 0]), [1e-4, np.sqrt(1e-4 * 1e-1), 1e-1], rtol=1e-9)  # log spaced
    random = report.other_layout(_space(["optimizer.learning_rate=loggrid(1e-4, 1e-1, 3)",
                                         "optimizer.weight_decay=grid(0, 1e-3, 3)"], "grid"), "grid", 9)
    assert len(np.unique(random[:, 0])) == 9 and len(np.unique(random[:, 1])) == 9
    assert random[:, 0].min() >= 1e-4 and random[:, 0].max() <= 1e-1


@pytest.mark.parametrize("method", ["random", "grid"])
def test_figures(tmp_path, method):
    from train.search import report

    entries = SPACE if method == "random" else ["optimizer.learning_rate=loggrid(1e-4, 1e-1, 3)",
                                                "optimizer.weight_decay=grid(0, 1e-3, 3)"]
    trials = [_trial(*t) for t in TRIALS]
    for number, *_ in TRIALS:
        d = tmp_path / "trials" / str(number)
        d.mkdir(parents=True)
        (d / "metrics.jsonl").write_text("\n".join(json.dumps({"step": 62 * e, "split": "eval", "top1": 0.5 + e / 10})
                                                   for e in (1, 2)) + "\n")
    table = report.rows(trials, _space(entries, method))
    assert {int(k): v[0].tolist() for k, v in report.curves(tmp_path, table, trials).items()} == {
        0: [1.0, 2.0], 1: [1.0, 2.0], 2: [1.0, 2.0]}
    paths = report.figures(tmp_path, table, trials, _space(entries, method), method)
    names = sorted(p.name for p in paths)
    assert names == ["layout.png", "learning_curves.png", "val_top1_vs_optimizer.learning_rate.png",
                     "val_top1_vs_optimizer.weight_decay.png"]
    assert all(p.stat().st_size > 5000 for p in paths)


def test_learning_curves_before_any_evaluation_say_so_without_a_warning(tmp_path):
    """A search stopped before any trial's first evaluation: the figure says so (matplotlib warned
    "No artists with labels found to put in legend" for its empty legend)."""
    import warnings

    from train.search import report

    trials = [_trial(*t) for t in TRIALS]
    table = report.rows(trials, _space())
    assert report.curves(tmp_path, table, trials) == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = report.figures(tmp_path, table, trials, _space(), "random")
    assert (tmp_path / "figures" / "learning_curves.png") in paths
