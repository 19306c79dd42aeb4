"""benchmarks/bench.py: its command line."""
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
    assert capsys.readouterr().err.splitlines()[-1].endswith(": error: --rounds must be at least 1 (got 0)")


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
