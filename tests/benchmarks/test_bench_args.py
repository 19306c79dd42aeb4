"""The benchmark scripts' shared argument types: a value out of range is argparse's one error line,
exit status 2, before any work."""
import argparse

import pytest

from helpers import benchmarks_module


@pytest.fixture(scope="module")
def bench_args():
    with benchmarks_module("bench_args") as module:
        yield module


def _parse(bench_args, capsys, kind, text):
    ap = argparse.ArgumentParser(prog="script")
    ap.add_argument("--n", type=kind)
    with pytest.raises(SystemExit) as e:
        ap.parse_args(["--n", text])
    assert e.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize("kind, text, line", [
    (("at_least", 1), "0", "script: error: argument --n: must be at least 1 (got 0)"),
    (("at_least", 0), "-3", "script: error: argument --n: must be at least 0 (got -3)"),
    (("at_least", 1), "2.5", "script: error: argument --n: invalid int value: '2.5'"),
    (("at_least", 0, float), "nan", "script: error: argument --n: must be at least 0 (got nan)"),
    (("positive",), "0", "script: error: argument --n: must be a positive number (got 0)"),
    (("positive",), "nan", "script: error: argument --n: must be a positive number (got nan)"),
    (("positive",), "soon", "script: error: argument --n: invalid float value: 'soon'"),
    (("positive",), "inf", "script: error: argument --n: must be a positive number (got inf)"),
    (("counts",), "8,abc", "script: error: argument --n: comma-separated integers >= 1, e.g. 8,16,32 (got '8,abc')"),
    (("counts",), "0", "script: error: argument --n: comma-separated integers >= 1, e.g. 8,16,32 (got '0')"),
])
def test_a_value_out_of_range_is_one_error_line(bench_args, capsys, kind, text, line):
    name, *args = kind
    made = getattr(bench_args, name)(*args) if args else getattr(bench_args, name)
    assert _parse(bench_args, capsys, made, text) == line


def test_values_in_range_keep_their_type(bench_args):
    assert bench_args.at_least(1)("3") == 3 and isinstance(bench_args.at_least(1)("3"), int)
    assert bench_args.at_least(0, float)("0") == 0.0 and bench_args.positive("1e-3") == 1e-3
    assert bench_args.counts("8,16,32") == [8, 16, 32]
