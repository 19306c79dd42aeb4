"""benchmarks/bench.py: its command line."""
import json
from pathlib import Path

import pytest

from helpers import benchmarks_module


@pytest.fixture(scope="module")
def bench():
    with benchmarks_module("bench") as module:
        yield module


def test_rounds_below_one_is_one_error_line(bench, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--rounds", "0"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(": error: argument --rounds: must be at least 1 (got 0)")


@pytest.mark.parametrize("flag", ["--out-json", "--out-md"])
def test_an_output_that_is_the_vs_json_is_refused_before_anything_runs(bench, tmp_path, capsys, monkeypatch, flag):
    """``--vs-json results/base.json`` with the default --out-json of that name replaced the baseline the
    next A/B compares with, silently. Another path to the same file is the same file."""
    base = tmp_path / "base.json"
    base.write_text('{"ours": []}')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench, "probe", lambda: pytest.fail("ran before the check"))
    with pytest.raises(SystemExit) as e:
        bench.main(["--vs-json", "base.json", flag, str(tmp_path / "." / "base.json")])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f": error: {flag} {tmp_path / '.' / 'base.json'} is the --vs-json file this run compares with; "
        f"name another {flag}")
    assert base.read_text() == '{"ours": []}'


def test_outputs_are_written_whole_or_not_at_all(bench, tmp_path, monkeypatch):
    """The JSON was written (``write_text``, in place) before the Markdown was built: a report that
    failed to build had already replaced the previous run's JSON."""
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    out_json.write_text("previous run")
    out_md.write_text("previous report")
    monkeypatch.setattr(bench, "markdown", lambda result: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        bench.write_outputs({"ours": []}, out_json, out_md)
    assert (out_json.read_text(), out_md.read_text()) == ("previous run", "previous report")
    monkeypatch.setattr(bench, "markdown", lambda result: "| model |\n")
    assert bench.write_outputs({"ours": []}, out_json, out_md) == "| model |\n"
    assert (out_json.read_text(), out_md.read_text()) == ('{\n "ours": []\n}\n', "| model |\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.md"]   # no temporary file left


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "argument --steps: must be at least 1 (got 0)"),
    (["--batch", "-2"], "argument --batch: must be at least 1 (got -2)"),
    (["--res", "0"], "argument --res: must be at least 1 (got 0)"),
    (["--models", "lenet5,nosuch"], "--models: unknown model name(s) nosuch; allowed: the names of zoo.list_models() "
                                    "(python -m zoo lists them)"),
    (["--vs-json", "missing.json"], "--vs-json missing.json: cannot read it"),
])
def test_bad_arguments_are_one_error_line_before_anything_runs(bench, tmp_path, capsys, monkeypatch, args, message):
    """They used to run every worker, then exit 0 with a traceback in the table (or lose the run at the end)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench, "probe", lambda: pytest.fail("ran before the check"))
    with pytest.raises(SystemExit) as e:
        bench.main(args)
    assert e.value.code == 2
    assert message in capsys.readouterr().err.splitlines()[-1]


def _fake_run(bench, monkeypatch, failing: set):
    monkeypatch.setattr(bench, "probe", lambda: 0.0)
    monkeypatch.setattr(bench, "run_matmul", lambda a, tmp: {"gflops_median": 100.0})
    monkeypatch.setattr(bench, "run_ours", lambda a, name, tmp: (
        {"model": name, "batch": a.batch, "res": a.res, "error": "rc 1: boom"} if name in failing else
        {"model": name, "batch": a.batch, "res": a.res, "input_shape": [28, 28, 1], "note": "", "params": 1, "macs": 10,
         "train_img_s": 1.0, "train_img_s_mean": 1.0, "eval_img_s": 2.0, "eval_img_s_mean": 2.0, "first_train_s": 1.0,
         "train_compile": {"compile_s": 0.5}, "first_eval_s": 0.1, "peak_rss_mib": 1.0, "loadavg_after": None}))


def test_a_failed_worker_is_a_failed_run(bench, tmp_path, monkeypatch):
    """Every model failed: nothing written, status 1. Some failed: the report says which, status 1."""
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    _fake_run(bench, monkeypatch, {"lenet5", "resnet18"})
    assert bench.main(["--models", "lenet5,resnet18", "--out-json", str(out_json), "--out-md", str(out_md)]) == 1
    assert not out_json.exists() and not out_md.exists()
    _fake_run(bench, monkeypatch, {"resnet18"})
    assert bench.main(["--models", "lenet5,resnet18", "--out-json", str(out_json), "--out-md", str(out_md)]) == 1
    assert json.loads(out_json.read_text())["failed"] == ["resnet18"]
    assert "**Incomplete run**: failed: resnet18" in out_md.read_text()


def test_input_pipeline_results_go_beside_out_json(bench, tmp_path, monkeypatch):
    """``--input-pipeline`` wrote benchmarks/results/input_pipeline.json whatever --out-json said."""
    _fake_run(bench, monkeypatch, set())
    seen = []

    def run_child(cmd, env, timeout, log):
        out = Path(cmd[cmd.index("--out") + 1])
        seen.append(out)
        out.write_text('{"results": []}')
        Path(log).write_text("")
        return 0, 0.0, 0.0

    monkeypatch.setattr(bench, "run_child", run_child)
    out_json = tmp_path / "sub" / "r.json"
    assert bench.main(["--models", "lenet5", "--input-pipeline", "--out-json", str(out_json),
                       "--out-md", str(tmp_path / "r.md")]) == 0
    assert seen == [tmp_path / "sub" / "r_input_pipeline.json"]
    assert json.loads(out_json.read_text())["input_pipeline"] == {"results": []}
