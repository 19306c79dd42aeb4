"""The hyper-parameter search's targets, measured back to back in one script (ratios in one session
are what counts on a shared machine; ``uptime``'s 1-minute load is recorded with every figure):

1. **Trials side by side**: the wall time of one plain training run of the quickstart
   (``python -m train --config configs/lenet5_mnist5k.py --config.num_epochs=2``), then of random
   searches of 8, 16 and 32 trials of the same config (``python -m train.search``, learning rate and
   weight decay searched: every trial in one group), then the plain run again; each search's ratio to
   the mean of the two plain runs (target: 8 trials <= 3x; one after the other they would take ~8x).
2. **Search quality**: the shipped quickstart config trained as shipped (10 epochs) and a 16-trial
   random search over learning rate and weight decay of the same config; both validation top-1.

Every figure is one command run as a user runs it (a fresh process: start-up, compilation, data,
evaluation, checkpoints included).

    python benchmarks/search.py [--trials 8,16,32] [--epochs 2] [--quality-trials 16 (0: skip)]
        [--out-json benchmarks/results/search.json]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from bench_args import at_least, counts, positive

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "lenet5_mnist5k.py"
SPACE = ["optimizer.learning_rate=loguniform(1e-4, 1e-1)", "optimizer.weight_decay=uniform(0, 1e-3)"]


def load() -> float:
    """``uptime``'s 1-minute load average."""
    return os.getloadavg()[0]


def timed(cmd: list[str]) -> dict:
    """Run ``cmd`` in the repository root; wall seconds and the load before and after."""
    before = load()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return {"command": " ".join(cmd[1:]), "wall_s": round(wall, 2), "load_before": round(before, 2),
            "load_after": round(load(), 2)}


def plain(workdir: Path, epochs: float | None) -> dict:
    shutil.rmtree(workdir, ignore_errors=True)
    extra = [] if epochs is None else [f"--config.num_epochs={epochs:g}"]
    r = timed([sys.executable, "-m", "train", f"--config={CONFIG}", f"--workdir={workdir}", *extra])
    evals = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    return {**r, "val_top1": evals[-1]["top1"], "val_loss": evals[-1]["loss"]}


def search(workdir: Path, trials: int, epochs: float | None) -> dict:
    shutil.rmtree(workdir, ignore_errors=True)
    extra = [] if epochs is None else [f"--config.num_epochs={epochs:g}"]
    r = timed([sys.executable, "-m", "train.search", f"--config={CONFIG}", f"--workdir={workdir}", "--method=random",
               f"--trials={trials}", *[f"--space={s}" for s in SPACE], *extra])
    with open(workdir / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == trials and all(row["status"] == "complete" for row in rows), rows
    best = max(rows, key=lambda row: float(row["val_top1"]))
    return {**r, "trials": trials, "best": {k: (v if k == "status" else float(v)) for k, v in best.items()}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=counts, default="8,16,32", help="search sizes timed against the plain run")
    ap.add_argument("--epochs", type=positive, default=2.0, help="epochs of the timed runs")
    ap.add_argument("--quality-trials", type=at_least(0), default=16, help="trials of the quality search (0: skip)")
    ap.add_argument("--out-json", default=str(ROOT / "benchmarks" / "results" / "search.json"))
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_search_"))
    out: dict = {"cpus": os.cpu_count(), "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    try:
        first = plain(tmp / "plain", args.epochs)
        print(f"plain run, {args.epochs:g} epochs: {first['wall_s']:.1f} s (load {first['load_before']:.2f})",
              flush=True)
        sweep = []
        for n in args.trials:
            r = search(tmp / f"search{n}", n, args.epochs)
            sweep.append(r)
            print(f"{n} trials: {r['wall_s']:.1f} s (load {r['load_before']:.2f})", flush=True)
        last = plain(tmp / "plain", args.epochs)
        ref = (first["wall_s"] + last["wall_s"]) / 2
        for r in sweep:
            r["ratio"] = round(r["wall_s"] / ref, 2)
        out["speed"] = {"plain": [first, last], "plain_mean_s": round(ref, 2), "searches": sweep}
        print(f"plain run again: {last['wall_s']:.1f} s (load {last['load_before']:.2f}); ratios to their mean "
              f"{ref:.1f} s: " + ", ".join(f"{r['trials']} trials {r['ratio']:.2f}x" for r in sweep), flush=True)
        if args.quality_trials:
            shipped = plain(tmp / "quickstart", None)
            found = search(tmp / "quality", args.quality_trials, None)
            out["quality"] = {"quickstart": shipped, "search": found}
            print(f"quickstart as shipped: val top-1 {shipped['val_top1']:.4f} ({shipped['wall_s']:.1f} s, load "
                  f"{shipped['load_before']:.2f}); best of {args.quality_trials} random trials: val top-1 "
                  f"{found['best']['val_top1']:.4f} (lr {found['best']['optimizer.learning_rate']:.3g}, weight decay "
                  f"{found['best']['optimizer.weight_decay']:.3g}; {found['wall_s']:.1f} s, load "
                  f"{found['load_before']:.2f})", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    path = Path(args.out_json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"written: {path}")
    return out


if __name__ == "__main__":
    main()
