"""README stays true: its test command is what CI runs, its model table is the registry's (and
zoo/model_counts.json, which python -m zoo prints from, holds the models' own counts)."""
import re

import pytest

import zoo
from helpers import ROOT, traced
from zoo.__main__ import HEADER, stored_counts, table_row

README = (ROOT / "README.md").read_text()


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    ci_cmd = next(line.split("#")[0].strip() for line in ci.splitlines() if line.strip().startswith("python -m pytest"))
    block = README.split("## Tests", 1)[1].split("```bash", 1)[1].split("```", 1)[0].strip()
    assert block == ci_cmd


def test_readme_model_table_has_every_model():
    header = "\n".join(HEADER)
    assert header in README
    table = README.split(header, 1)[1].split("\n\n", 1)[0]
    assert re.findall(r"^\| `([a-z0-9_]+)` \|", table, flags=re.M) == zoo.list_models()


@pytest.mark.parametrize("name", zoo.list_models())
def test_readme_model_row_and_stored_counts_match_the_model(name):
    layers = traced(name)[0]
    counted = (sum(r.params for r in layers), sum(r.macs for r in layers))
    assert stored_counts().get(name) == counted, "run: python -m zoo --update-counts"
    assert table_row(name, *counted) in README.splitlines()
