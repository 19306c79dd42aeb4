"""Training a group: with --prune, Optuna's successive halving stops the poor trials at an
evaluation and they leave the group (no more train steps, status pruned); a trial whose loss goes
non-finite fails under stop_on_nonfinite. LeNet-5 on the offline digits: integration."""
import json

import pytest

from helpers import quick

pytestmark = pytest.mark.integration


def test_pruned_and_failed_trials_leave_the_group(tmp_path):
    import train

    config = quick(**{"num_epochs": 1.0, "eval_every_epochs": 0.25, "log_every_steps": 8, "optimizer.name": "sgd",
                      "optimizer.momentum": 0.9, "optimizer.weight_decay": 0.0, "schedule.warmup_epochs": 0.0})
    r = train.search(config, ["optimizer.learning_rate=choice(1e-5, 3e-5, 3e-2, 1e9)"], tmp_path, method="grid",
                     prune=True)
    status = {row["optimizer.learning_rate"]: row["status"] for row in r.table}
    # sgd at 1e9 overflows at once; successive halving (reduction factor 4) promotes the best of four at the
    # first evaluation (step 16): the 3e-2 trial
    assert status == {1e-5: "pruned", 3e-5: "pruned", 3e-2: "complete", 1e9: "failed"}
    for row in r.table:
        lines = [json.loads(x) for x in (tmp_path / "trials" / str(row["trial"]) / "metrics.jsonl").read_text().splitlines()]
        steps = [x["step"] for x in lines if x["split"] == "train"]
        if row["status"] == "complete":
            assert row["steps"] == 62 and steps[-1] == 62
        else:   # left the group at the first evaluation: no step after it
            assert row["steps"] == 16 and steps[-1] == 16
    assert r.best["optimizer.learning_rate"] == 3e-2


def test_a_group_asks_the_pruner_best_first_so_it_compares_the_whole_group():
    """Optuna's successive halving ranks a trial among those that asked before it: in member order, of a
    first group scoring 0.05, 0.30, 0.20, 0.10 the worst (0.05, asking first) was kept and 0.20 pruned.
    Best first, only the group's best goes on (a quarter of four, Optuna's reduction factor 4)."""
    import optuna

    from train.search import runner
    from train.search.study import make_pruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    values = [0.05, 0.30, 0.20, 0.10]
    assert runner.pruning_order(values, [0, 1, 2, 3]) == [1, 2, 3, 0]
    assert runner.pruning_order([0.2, float("nan"), 0.2], [5, 6, 4]) == [2, 0, 1]   # ties: lower number; NaN last
    study = optuna.create_study(direction="maximize", pruner=make_pruner("halving", 7))
    trials = [study.ask() for _ in values]
    for t, v in zip(trials, values):
        t.report(v, 1)
    pruned = {i: trials[i].should_prune() for i in runner.pruning_order(values, [t.number for t in trials])}
    assert [pruned[i] for i in range(4)] == [True, False, True, True]


def test_a_group_locks_its_trials_folders_while_it_trains(tmp_path, monkeypatch):
    """A `python -m train` into a trial's folder was not refused: the two runs interleaved their rows,
    and the trial's checkpoint gave way to the other run's."""
    import fcntl
    import os
    import types

    from train.search import runner

    seen = []

    def train_group(members, trials, workdir, **kw):
        for m in members:   # another open file description, as another process would have
            fd = os.open(runner.trial_dir(workdir, m.number) / ".lock", os.O_RDWR)
            try:
                with pytest.raises(BlockingIOError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)
            seen.append(m.number)
        return {}

    monkeypatch.setattr(runner, "_train_group", train_group)
    members = [types.SimpleNamespace(number=0), types.SimpleNamespace(number=3)]
    assert runner.run_group(members, None, tmp_path, prune=False, stop=None) == {}
    assert seen == [0, 3] and not (runner.trial_dir(tmp_path, 0) / ".lock").exists()   # released after



def test_a_signal_during_an_evaluation_abandons_it_at_the_next_batch(tmp_path, monkeypatch):
    """The group finished its whole evaluation before acting on a signal (minutes on a large split);
    now the next eval batch stops it: no eval row written, nothing reported, the trials handed back
    (the search says it was interrupted; the same command runs them again)."""
    import sys

    import train
    from train import interrupts

    class SignalDuringEvaluation(interrupts.Stop):   # the signal arrives while the group evaluates
        received = None
        asked_in_evaluation = 0

        @property
        def signal(self):
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_name != "evaluate":
                frame = frame.f_back
            if frame is not None:
                self.asked_in_evaluation += 1
                self.received = "SIGTERM"
            return self.received

        @signal.setter
        def signal(self, value):
            pass

    stop = SignalDuringEvaluation()
    monkeypatch.setattr(interrupts, "_process_stop", stop)
    config = quick(**{"num_epochs": 1.0, "eval_every_epochs": 0.25, "log_every_steps": 8,
                      "schedule.warmup_epochs": 0.0})
    r = train.search(config, ["optimizer.learning_rate=choice(0.01, 0.1)"], tmp_path, method="grid")
    assert r.interrupted == "SIGTERM" and stop.asked_in_evaluation == 1   # before its first batch
    for n in (0, 1):
        rows = [json.loads(x) for x in (tmp_path / "trials" / str(n) / "metrics.jsonl").read_text().splitlines()]
        assert rows and {row["split"] for row in rows} == {"train"} and rows[-1]["step"] == 16
