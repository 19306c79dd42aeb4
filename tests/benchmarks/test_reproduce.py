"""benchmarks/reproduce.py: its recipes, the results file (merged, never silently overwritten), the
README table, and a dry run of every recipe end to end."""
import json
import subprocess
import sys

import pytest

import zoo
from helpers import FIXTURES, ROOT, benchmarks_module, child_env, snapshot


@pytest.fixture(scope="module")
def reproduce():
    with benchmarks_module("reproduce") as module:
        yield module


def test_recipes_cite_the_published_figures(reproduce):
    error = json.loads((FIXTURES / "reference.json").read_text())["training"]["lenet5_mnist_test_error_percent"]
    for recipe in reproduce.RECIPES:
        config = reproduce.config_of(recipe)
        assert config.model in zoo.list_models() and config.data.name.startswith("idx:")
        assert recipe.target_top1 >= recipe.reference_top1 and recipe.reference
        assert (ROOT / "configs" / f"{recipe.config}.py").exists()
        if recipe.dataset == "MNIST":
            assert recipe.reference_top1 == pytest.approx(100 - error)
        dry = reproduce.config_of(recipe, dry_run=True)
        assert dry.model == config.model and dry.optimizer == config.optimizer and dry.data.name == "synthetic"


def row(config, top1):
    return {"model": "m", "dataset": "d", "top1": top1, "reference_top1": 99.0, "reference": "r", "epochs": 2.0,
            "wall_s": 125.0, "config": config, "target_top1": 98.0, "command": f"python x --only {config}"}


def test_results_are_merged_and_an_unreadable_file_is_kept(reproduce, tmp_path):
    out = tmp_path / "reproduce.json"
    reproduce.write_rows(out, [row("configs/other.py", 50.0), row("configs/lenet5_mnist.py", 90.0)])
    rows = reproduce.write_rows(out, [row("configs/lenet5_mnist.py", 99.3)])
    assert [(r["config"], r["top1"]) for r in rows] == [("configs/lenet5_mnist.py", 99.3), ("configs/other.py", 50.0)]
    assert json.loads(out.read_text()) == rows
    table = reproduce.table(rows)
    assert "| `m` | d | **99.30%** | 99.00% | >= 98.00% | 2 | 2 min | `python x --only configs/lenet5_mnist.py` |" in table
    out.write_text("[{not json")
    with pytest.raises(SystemExit, match="not valid JSON.*it is not overwritten"):
        reproduce.write_rows(out, [row("configs/lenet5_mnist.py", 99.3)])
    assert out.read_text() == "[{not json"
    with pytest.raises(SystemExit) as e:
        reproduce.main(["--only", "lenet5_mnist,lenet6", "--root", str(tmp_path)])
    assert e.value.code == 2


@pytest.mark.integration  # trains and evaluates every recipe's model for 2 steps in a subprocess (~1 min)
def test_dry_run_wires_every_recipe(tmp_path):
    results = ROOT / "benchmarks" / "results"
    before = snapshot(results) if results.exists() else None
    proc = subprocess.run([sys.executable, "benchmarks/reproduce.py", "--dry-run", "--root", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, env=child_env(), timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads((tmp_path / "reproduce.json").read_text())
    assert [r["config"] for r in rows] == [f"configs/{n}.py" for n in ("lenet5_mnist", "lenet5_classic_mnist",
                                                                    "lenet5_fashion_mnist", "resnet20_fashion_mnist")]
    for r in rows:
        assert {"model", "dataset", "top1", "reference_top1", "reference", "epochs", "wall_s", "config"} <= set(r)
        assert r["dry_run"] and r["step"] == 2 and 0 <= r["top1"] <= 100 and r["data"].startswith("idx:")
    assert "| model | dataset | top-1 (ours) | published |" in proc.stdout
    assert (snapshot(results) if results.exists() else None) == before  # the real results are untouched


def test_readme_table_is_the_results_file(reproduce):
    """README's "Reproduced results" shows exactly the committed rows (what ``--table`` prints)."""
    rows = reproduce.read_rows(reproduce.RESULTS)
    assert {r["config"] for r in rows} == {f"configs/{r.config}.py" for r in reproduce.RECIPES}
    assert reproduce.table(rows) in (ROOT / "README.md").read_text()
