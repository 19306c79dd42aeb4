"""``python -m train.search`` as a user runs it: bad input is one error line and exit status 2 with
nothing of an existing study changed; a search killed with SIGKILL resumes without re-running a
finished trial; two processes on one study split its trials, each trial run exactly once.
Subprocesses training LeNet-5 on the offline digits: integration."""
import csv
import json
import subprocess
import sys

import pytest

from helpers import ROOT, child_env, quick, snapshot

pytestmark = pytest.mark.integration
SHORT = ["--config.num_epochs=1", "--config.schedule.warmup_epochs=0", "--config.log_every_steps=31"]
LR = "--space=optimizer.learning_rate=loguniform(1e-4, 3e-2)"


def _cmd(workdir, *args):
    return [sys.executable, "-m", "train.search", f"--config={ROOT / 'configs' / 'lenet5_mnist5k.py'}",
            f"--workdir={workdir}", *args]


def _run(workdir, *args):
    return subprocess.run(_cmd(workdir, *args), env=child_env(), cwd=ROOT, capture_output=True, text=True, timeout=900)


def _rows(workdir):
    with open(workdir / "trials.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("args, message", [
    (["--space=optimizer.learning_rat=loguniform(1e-4, 1e-1)", "--trials=2"],
     "error: --space 'optimizer.learning_rat=loguniform(1e-4, 1e-1)': unknown config field optimizer.learning_rat; "
     "did you mean optimizer.learning_rate?"),
    (["--space=optimizer.learning_rate=loguniform(0, 1e-1)", "--trials=2"],
     "error: --space 'optimizer.learning_rate=loguniform(0, 1e-1)': loguniform needs bounds > 0 (a log scale), got 0"),
    (["--method=grid", "--space=optimizer.learning_rate=loggrid(1e-4, 1e-2, 3)", "--trials=2"],
     "error: --trials 2: the grid has 3 points (3); give --trials 3 (or fewer grid values)"),
    (["--pruner=hyperband", LR, "--trials=2"], "error: --pruner=hyperband needs --prune (without it no trial is pruned)"),
    ([LR, "--config.optimizer.learning_rate=0.5", "--trials=2"],   # once: 0.5 silently replaced by each trial's
     "error: --space 'optimizer.learning_rate=loguniform(1e-4, 3e-2)': optimizer.learning_rate is also fixed by "
     "--config.optimizer.learning_rate=...; search it or fix it, not both"),
])
def test_bad_input_is_one_error_line(tmp_path, args, message):
    r = _run(tmp_path / "w", *args)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and errors == [message], r.stderr[-2000:]
    assert not (tmp_path / "w" / "study.db").exists()


def test_a_workdir_holding_another_search_is_refused_and_kept(tmp_path):
    from train.search import space, study

    other = space.parse(["optimizer.weight_decay=uniform(0, 1e-3)"], quick())
    tmp_path.mkdir(exist_ok=True)
    study.open_study(study.storage_url(None, tmp_path), "search", study.identity("random", other, quick()))
    before = snapshot(tmp_path)
    r = _run(tmp_path, LR, "--trials=2")
    assert r.returncode == 2 and "holds another search (its space is ['optimizer.weight_decay=" in r.stderr
    assert "nothing was changed. Use another --workdir or --study" in r.stderr
    assert snapshot(tmp_path) == before


def test_a_killed_search_resumes_without_rerunning_finished_trials(tmp_path):
    args = [LR, "--trials=4", "--parallel-trials=2", *SHORT]
    p = subprocess.Popen(_cmd(tmp_path, *args), env=child_env(), cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    try:
        for line in p.stdout:   # the first group's result line, then SIGKILL
            if line.startswith("trials 0: complete") and ", 1: complete" in line:
                break
        else:
            raise AssertionError("the first group never finished")
    finally:
        p.kill()
        p.wait()
    finished = {i: snapshot(tmp_path / "trials" / str(i)) for i in (0, 1)}
    r = _run(tmp_path, *args)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = _rows(tmp_path)
    assert len(rows) == 4 and all(row["status"] == "complete" for row in rows)
    assert {"0", "1"} <= {row["trial"] for row in rows}
    assert all(snapshot(tmp_path / "trials" / str(i)) == finished[i] for i in (0, 1))
    assert "trials 0" not in r.stdout and "trials 1" not in r.stdout


def test_two_processes_split_the_trials_of_one_study(tmp_path):
    args = [LR, "--trials=6", "--parallel-trials=1", f"--storage={tmp_path / 'shared.journal'}", "--study=shared",
            *SHORT]
    procs = [subprocess.Popen(_cmd(tmp_path, *args), env=child_env(), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    rows = _rows(tmp_path)
    assert sorted(int(row["trial"]) for row in rows) == list(range(6))
    assert all(row["status"] == "complete" for row in rows)
    ran = [[line.split(":")[0] for line in o[0].splitlines() if line.endswith("training side by side")] for o in outs]
    assert all(ran) and sorted(sum(ran, [])) == [f"trials {i}" for i in range(6)], ran   # each once, both took part
    for row in rows:   # one run per trial: one evaluation, train lines in order
        lines = [json.loads(x) for x in (tmp_path / "trials" / row["trial"] / "metrics.jsonl").read_text().splitlines()]
        assert [x["step"] for x in lines if x["split"] == "eval"] == [62]
        assert [x["step"] for x in lines if x["split"] == "train"] == [31, 62]
    assert not (tmp_path / "study.db").exists()
