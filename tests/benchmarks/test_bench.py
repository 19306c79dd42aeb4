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
