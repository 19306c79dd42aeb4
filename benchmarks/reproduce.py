"""Reproduce published accuracy: train each recipe to completion, evaluate its final checkpoint, record it.

    python benchmarks/reproduce.py                              # every recipe (hours on a 2-core CPU)
    python benchmarks/reproduce.py --only lenet5_mnist          # one recipe (comma-separated: several)
    python benchmarks/reproduce.py --dry-run                    # the wiring, in seconds (see below)
    python benchmarks/reproduce.py --table                      # the README table from the results file

For each recipe (a config in ``configs/``): ``train.fit(config, <--root>/<config>)`` (``--root``
default ``runs/reproduce``, relative to the current directory; a run that was
interrupted resumes; a finished one is only evaluated again), then ``train.evaluate(workdir,
checkpoint_step="latest")``: the FINAL checkpoint on the test split, never the best one on the test
split. One row per recipe goes to ``benchmarks/results/reproduce.json`` (a list of {"model",
"dataset", "top1", "reference_top1", "reference", "epochs", "wall_s", "config", ...}); a recipe's
new row replaces its old one whole (fields added to a row by hand, such as ``note``, go with it) and
every other row is kept. ``wall_s`` is the training wall time,
summed over resumed runs (``WORKDIR/reproduce_wall.json``), process start and evaluation excluded.
The script then prints the README's "Reproduced results" table.

``--dry-run`` runs the same code on every recipe with its model, optimizer and schedule for 2 steps
on synthetic data of the recipe's input shape, in ``<--root>/<config>-dry-run``, checks where the
recipe's real dataset would be read from, and writes its rows (``"dry_run": true``) to
``<--root>/reproduce.json`` (never to ``benchmarks/results``). The table marks dry-run rows as such
(their top-1 is 2 steps on synthetic data, not a result).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "reproduce.json"
LECUN_1998 = "LeCun et al. 1998, sec. III.C: LeNet-5, 0.95% test error without distortions"
FASHION_2017 = "Xiao et al. 2017 (Fashion-MNIST), Table 3: best non-neural baseline (SVC), 89.7%"


@dataclasses.dataclass(frozen=True)
class Recipe:
    config: str              # module in configs/
    dataset: str
    reference_top1: float    # the published figure, %
    reference: str           # where it is published
    target_top1: float       # what this project promises, %


RECIPES = (
    Recipe("lenet5_mnist", "MNIST", 100 - 0.95, LECUN_1998, 99.2),
    Recipe("lenet5_classic_mnist", "MNIST", 100 - 0.95, LECUN_1998, 99.05),
    Recipe("lenet5_fashion_mnist", "Fashion-MNIST", 89.7, FASHION_2017, 92.0),
    Recipe("resnet20_fashion_mnist", "Fashion-MNIST", 89.7, FASHION_2017, 93.5),
)
BY_NAME = {r.config: r for r in RECIPES}


def config_of(recipe: Recipe, *, dry_run: bool = False):
    config = importlib.import_module(f"configs.{recipe.config}").get_config()
    if dry_run:  # the recipe's model, optimizer and schedule; 2 steps of synthetic data of its input shape
        config.data.name = "synthetic"
        config.data.synthetic_num_examples = 64
        config.num_train_steps = 2
        config.batch_size, config.eval_batch_size = 16, 32
        config.schedule.warmup_epochs = 0.0
        config.log_every_steps = 1
        config.checkpoint.async_save = False
    return config


def data_status(config) -> str:
    """Where the recipe reads its data, and whether it is there (no data is read)."""
    name = config.data.name
    if not name.startswith("idx:"):
        return name
    from train.data import idx  # noqa: PLC0415

    try:
        idx.layout(name[len("idx:"):])
    except (OSError, ValueError) as e:
        return f"{name} (MISSING: {e})"
    return f"{name} (found)"


def _wall(workdir: Path, seconds: float | None = None) -> float:
    """Training seconds spent in ``workdir`` so far, adding ``seconds`` when given."""
    path = workdir / "reproduce_wall.json"
    total = json.loads(path.read_text())["seconds"] if path.exists() else 0.0
    if seconds is not None:
        total += seconds
        path.write_text(json.dumps({"seconds": total}))
    return total


def run(recipe: Recipe, root: Path, *, dry_run: bool = False) -> dict:
    """Train ``recipe`` to completion in ``root/<config>``, evaluate the final checkpoint: its result row."""
    import jax  # noqa: PLC0415

    import train  # noqa: PLC0415

    real = config_of(recipe)
    config = config_of(recipe, dry_run=True) if dry_run else real
    workdir = root / (recipe.config + ("-dry-run" if dry_run else ""))   # a dry run never touches a real run
    result = train.fit(config, workdir)
    wall = _wall(workdir, result.seconds)
    if result.interrupted:
        raise SystemExit(f"{recipe.config}: interrupted by {result.interrupted} at step {result.step}; "
                         f"run the same command again to resume")
    t0 = time.perf_counter()
    report = train.evaluate(workdir, checkpoint_step="latest", plot=False)
    return {"model": real.model, "dataset": recipe.dataset, "top1": round(100 * report["top1"], 2),
            "reference_top1": recipe.reference_top1, "reference": recipe.reference, "epochs": real.num_epochs,
            "wall_s": round(wall, 1), "config": f"configs/{recipe.config}.py", "target_top1": recipe.target_top1,
            "test_examples": report["count"], "step": report["step"], "eval_s": round(time.perf_counter() - t0, 1),
            "command": f"python benchmarks/reproduce.py --only {recipe.config}", "data": data_status(real),
            "dry_run": dry_run, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {jax.devices()[0].platform}",
            "jax": jax.__version__, "date": time.strftime("%Y-%m-%d")}


def read_rows(path: Path) -> list[dict]:
    """The rows already in ``path`` (none if it does not exist); an unreadable file is an error, never
    overwritten."""
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SystemExit(f"--out {path}: not valid JSON ({e}); move it away, it is not overwritten") from None
    if not isinstance(rows, list):
        raise SystemExit(f"--out {path}: expected a JSON list of result rows; move it away, it is not overwritten")
    return rows


def write_rows(path: Path, new: list[dict]) -> list[dict]:
    """Merge ``new`` into the rows of ``path`` (a recipe's new row replaces its old one), atomically."""
    keys = {r["config"] for r in new}
    rows = [r for r in read_rows(path) if r.get("config") not in keys] + new
    order = [f"configs/{r.config}.py" for r in RECIPES]
    rows.sort(key=lambda r: (order.index(r["config"]) if r["config"] in order else len(order), r["config"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    os.replace(tmp, path)
    return rows


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def table(rows: list[dict]) -> str:
    """The README's "Reproduced results" table."""
    lines = ["| model | dataset | top-1 (ours) | published | target | epochs | wall time | command |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r.get("dry_run"):   # 2 steps on synthetic data: the wiring, not a result
            lines.append(f"| `{r['model']}` (DRY RUN) | {r['dataset']} | {r['top1']:.2f}% (dry run: 2 steps, synthetic "
                         f"data) | {r['reference_top1']:.2f}% | >= {r.get('target_top1', float('nan')):.2f}% | "
                         f"{r.get('step', 2)} steps | {_duration(r['wall_s'])} | `{r.get('command', r['config'])} --dry-run` |")
            continue
        lines.append(f"| `{r['model']}` | {r['dataset']} | **{r['top1']:.2f}%** | {r['reference_top1']:.2f}% "
                     f"| >= {r.get('target_top1', float('nan')):.2f}% | {r['epochs']:g} | {_duration(r['wall_s'])} "
                     f"| `{r.get('command', r['config'])}` |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", default="", help=f"comma-separated recipes (default: all): {', '.join(BY_NAME)}")
    ap.add_argument("--root", default="runs/reproduce", help="parent folder of the recipes' workdirs (relative to "
                    "the current directory)")
    ap.add_argument("--out", default=None, help=f"results file (default {RESULTS.relative_to(ROOT)}; "
                                                f"--dry-run: <--root>/reproduce.json)")
    ap.add_argument("--dry-run", action="store_true", help="2 steps per recipe on synthetic data: the wiring only")
    ap.add_argument("--table", action="store_true", help="print the table of the results file, train nothing")
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress lines reach a log file as they happen
    names = [n for n in args.only.split(",") if n] or list(BY_NAME)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        ap.error(f"--only: unknown recipe(s) {', '.join(unknown)}; allowed: {', '.join(BY_NAME)}")
    root = Path(args.root)
    out = Path(args.out) if args.out else (root / "reproduce.json" if args.dry_run else RESULTS)
    if args.table:
        print(table(read_rows(out)))
        return 0
    read_rows(out)  # refuse an unreadable results file before hours of training
    for name in names:
        row = run(BY_NAME[name], root, dry_run=args.dry_run)
        rows = write_rows(out, [row])
        print(f"{name}: top-1 {row['top1']:.2f}% (published {row['reference_top1']:.2f}%, target "
              f">= {row['target_top1']:.2f}%) in {_duration(row['wall_s'])}; data {row['data']}", flush=True)
    print(f"\nresults: {out}\n\n{table(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
