"""bench.py's command line: its options and the checks made on them before any work (one line, exit
status 2, for a bad value: a typo once cost a whole run, or ran the work and then failed)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_args import at_least, positive
from bench_report import load_torch_rows


def parser(doc: str, default_models: str, torch_script: str) -> argparse.ArgumentParser:
    """The options of ``benchmarks/bench.py`` (``doc``: its docstring, the description)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=default_models, help="comma-separated zoo names")
    ap.add_argument("--batch", type=at_least(1), default=64, help="global batch (all devices)")
    ap.add_argument("--res", type=at_least(1), default=32, help="input height = width (fixed-size models use theirs)")
    ap.add_argument("--classes", type=at_least(1), default=10)
    ap.add_argument("--steps", type=at_least(1), default=10, help="timed steps (train and eval each)")
    ap.add_argument("--warmup", type=at_least(0), default=3, help="untimed steps after the first (compiling) one")
    ap.add_argument("--precision", default="float32", choices=("float32", "bfloat16", "float16"))
    ap.add_argument("--parallelism", default="shard_map", choices=("shard_map", "pmap"))
    ap.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS in the workers (e.g. "
                    "'--xla_cpu_use_xnnpack=false')")
    ap.add_argument("--experiment", default=None, help="a candidate shared-code change from "
                    "benchmarks/experiments.py, patched in before the model is built (e.g. im2col_small)")
    ap.add_argument("--matmul-size", type=at_least(1), default=4096)
    ap.add_argument("--matmul-reps", type=at_least(1), default=5)
    ap.add_argument("--no-xla-cost", dest="xla_cost", action="store_false",
                    help="skip XLA's cost analysis of the train step (saves one trace per model)")
    ap.add_argument("--torch-json", help="PyTorch figures (JSON of ../shared/torch_baseline/bench.py) to compare with")
    ap.add_argument("--run-torch", action="store_true", help="run the PyTorch script for each model, interleaved")
    ap.add_argument("--torch-python", default="/work/torch-ref/bin/python")
    ap.add_argument("--torch-script", default=torch_script)
    ap.add_argument("--no-aux", action="store_true",
                    help="auxiliary classifiers off on both sides (googlenet, inception_v3: torchvision's train-mode "
                         "outputs are tuples the reference script cannot take; Inception v3's needs 299 px)")
    ap.add_argument("--torch-channels-last", action="store_true")
    ap.add_argument("--vs-json", help="an earlier JSON of this script (e.g. other --xla-flags): ratio this / that")
    ap.add_argument("--warm", action="store_true", help="each model's worker runs twice on a fresh persistent "
                    "compilation cache: the first step cold, then warm (a re-run); else the cache is off")
    ap.add_argument("--rounds", type=at_least(1), default=1, help="with --run-torch: run ours then PyTorch this many times "
                    "per model; ratios are the median of the rounds' ratios (this machine's speed drifts over minutes)")
    ap.add_argument("--input-pipeline", action="store_true", help="also run benchmarks/input_pipeline.py")
    ap.add_argument("--out-json", default=None, help="default benchmarks/results/bench_b{batch}_r{res}.json")
    ap.add_argument("--out-md", default=None, help="default benchmarks/results/bench_b{batch}_r{res}.md")
    ap.add_argument("--timeout", type=positive, default=3600, help="seconds per worker")
    ap.add_argument("--max-other-cpu", type=at_least(0, float), default=0.25, help="rerun a model (ours or torch) when others "
                    "(other processes + hypervisor steal) took more CPUs than this during its run (shared machines)")
    ap.add_argument("--retries", type=at_least(0), default=2, help="reruns at most, per model and framework")
    ap.add_argument("--wait", type=at_least(0, float), default=900, help="seconds to wait for a quiet machine before a rerun")
    ap.add_argument("--_worker", choices=("model", "matmul"), help=argparse.SUPPRESS)
    ap.add_argument("--_result", help=argparse.SUPPRESS)
    return ap


def check_args(ap, a) -> tuple[dict | None, dict]:
    """Refuse bad arguments before any work (the numbers: their argparse types) (``ap.error``: one line, exit status 2); returns the
    ``--vs-json`` run (or None) and the ``--torch-json`` rows, read now so that a typo loses no run."""
    import zoo  # noqa: PLC0415

    models = [m for m in a.models.split(",") if m]
    unknown = [m for m in models if m not in zoo.list_models()]
    if not models or unknown:
        ap.error(f"--models: unknown model name(s) {', '.join(unknown) or '(none given)'}; allowed: the names of "
                 f"zoo.list_models() (python -m zoo lists them)")
    if a.experiment:
        from experiments import EXPERIMENTS  # noqa: PLC0415
        if a.experiment not in EXPERIMENTS:
            ap.error(f"--experiment {a.experiment}: allowed {', '.join(EXPERIMENTS)}")
    if a.run_torch:
        for flag, path in (("--torch-python", a.torch_python), ("--torch-script", a.torch_script)):
            if not Path(path).is_file():
                ap.error(f"{flag} {path}: no such file (needed by --run-torch)")
    vs = None
    if a.vs_json:
        try:
            vs = json.loads(Path(a.vs_json).read_text())
        except (OSError, json.JSONDecodeError) as e:
            ap.error(f"--vs-json {a.vs_json}: cannot read it ({e})")
        if not isinstance(vs, dict) or not isinstance(vs.get("ours"), list):
            ap.error(f"--vs-json {a.vs_json}: not a JSON of bench.py (no 'ours' list)")
    torch_rows = {}
    if a.torch_json:
        try:
            torch_rows = load_torch_rows(a.torch_json, a)
        except ValueError as e:
            ap.error(f"--torch-json {a.torch_json}: {e}")
    return vs, torch_rows
