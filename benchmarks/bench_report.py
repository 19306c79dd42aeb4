"""``bench.py``'s rows and report: GFLOP/s and utilisation, rounds combined into one row and one
ratio, the Markdown tables and the lines printed while a run goes on; PyTorch rows read from a file.
No jax and no processes here.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path


def disturbance(r: dict | None) -> float | None:
    """CPUs taken from the benchmark by others during its run: other processes + hypervisor steal."""
    if not r or r.get("other_cpu") is None:
        return None
    return round(r["other_cpu"] + (r.get("steal") or 0.0), 2)


def derive(rows: list[dict], peak_gflops: float | None) -> None:
    """GFLOP/s and utilisation from MACs and throughput (in place). Our rows use the MACs of what runs at
    that input size (``train_macs_executed`` / ``eval_macs_executed``, ``harness.executed_macs``: VGG at
    32x32 folds its 25088 x 4096 layer to 512 x 4096) where the row has them, else the literal ``macs``;
    PyTorch rows get only our literal ``macs`` (torchvision runs the literal pool -> flatten -> Linear)."""
    for r in rows:
        if "macs" not in r:
            continue
        for kind, mult in (("train", 6.0), ("eval", 2.0)):
            if r.get(f"{kind}_img_s") is None:
                continue
            g = mult * r.get(f"{kind}_macs_executed", r["macs"]) * r[f"{kind}_img_s"] / 1e9
            r[f"{kind}_gflops"] = g
            r[f"{kind}_util"] = g / peak_gflops if peak_gflops else None


def combine_rounds(rounds: list[tuple[dict, dict | None]]) -> tuple[dict, dict | None]:
    """``--rounds``: one (ours, torch) pair of rows per round, run back to back -> the first round's
    rows (first step, compile and memory figures: every round's worker starts cold) with throughput
    replaced by the median over rounds, and ``train_ratio`` / ``eval_ratio`` = the median of the
    rounds' own ratios (ours / torch of the same round: this machine's speed drifts by 20-30% over
    minutes, on both sides alike). Each round's figures are kept under ``rounds``."""
    first_torch = next((t for _, t in rounds if t), None)
    ours, torch = dict(rounds[0][0]), (dict(first_torch) if first_torch else None)
    done = [(o, t) for o, t in rounds if "train_img_s" in o]
    if len(rounds) < 2 or not done:
        return ours, torch
    keys = ("train_img_s", "train_img_s_mean", "eval_img_s", "eval_img_s_mean")
    ours["rounds"] = [{k: o[k] for k in keys} for o, _ in done]
    for k in keys:
        ours[k] = statistics.median(o[k] for o, _ in done)
    paired = [i for i, (_, t) in enumerate(done) if t]
    if torch is not None and paired:
        for kind in ("train", "eval"):
            for i in paired:
                ours["rounds"][i][f"{kind}_ratio"] = ratio(*done[i], kind)
            ours[f"{kind}_ratio"] = statistics.median(ours["rounds"][i][f"{kind}_ratio"] for i in paired)
        torch["rounds"] = [{k: done[i][1][k] for k in ("train_img_s", "eval_img_s")} for i in paired]
        for k in ("train_img_s", "eval_img_s"):
            torch[k] = statistics.median(x[k] for x in torch["rounds"])
    return ours, torch


def ratio(r: dict, t: dict, kind: str) -> float:
    """ours / PyTorch for ``kind`` (train, eval): the median of the rounds' ratios with ``--rounds``."""
    return r.get(f"{kind}_ratio", r[f"{kind}_img_s_mean"] / t[f"{kind}_img_s"])


def _spread(r: dict, kind: str) -> str:
    q = [x[f"{kind}_ratio"] for x in r.get("rounds", []) if f"{kind}_ratio" in x]
    return f" ({min(q):.2f}-{max(q):.2f})" if len(q) > 1 else ""


def _f(x, nd=1, pct=False):
    if x is None:
        return "-"
    if pct:
        return f"{100 * x:.1f}%"
    return f"{x:,.{nd}f}"


def _macs(r) -> str:
    """Literal MMACs/img, and what runs where that differs (train / eval: ``derive`` uses those)."""
    run = [r.get(f"{k}_macs_executed", r["macs"]) for k in ("train", "eval")]
    if run == [r["macs"]] * 2:
        return f"{r['macs'] / 1e6:,.1f}"
    return f"{r['macs'] / 1e6:,.1f} ({' / '.join(f'{x / 1e6:,.1f}' for x in run)} run)"


def _shape(r):
    h, w, c = r["input_shape"]
    return f"{h}x{w}x{c}"


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [f"### batch {s['batch']}, {s['res']}x{s['res']}, {s['classes']} classes, {s['precision']}, "
             f"{s['parallelism']} on {result['machine']['devices']}", "",
             f"jax {result['machine']['jax']}; median of {s['steps']} timed steps after {s['warmup']} warm-up; "
             f"dense matmul ({s['matmul_size']}^2, {s['precision']}): "
             f"{_f(result['matmul_peak_gflops'])} GFLOP/s; load average {result['loadavg_start']} at start, "
             f"{result['loadavg_end']} at end; others took {result.get('probe_start')} / {result.get('probe_end')} CPUs "
             f"at start / end (probe)" + (f"; XLA_FLAGS `{s['xla_flags']}`" if s["xla_flags"] else "")
             + (f"; experiment `{s['experiment']}`" if s.get("experiment") else ""), "",
             "| model | input | params M | MMACs/img | train img/s | eval img/s | 1st train step s (compile s) "
             "| 1st eval s | peak RSS MiB | train GFLOP/s | train % mm | eval GFLOP/s | eval % mm | others' CPUs |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["ours"]:
        if "skipped" in r or "error" in r:
            why = " ".join(str(r.get("skipped") or r.get("error")).split()).replace("|", "/")   # one table row
            lines.append(f"| {r['model']} | - | {why} |" + " |" * 12)
            continue
        dev = f" (device {_f(r['device_peak_mib'], 0)})" if r.get("device_peak_mib") else ""
        lines.append(
            f"| {r['model']} | {_shape(r)} | {r['params'] / 1e6:.2f} | {_macs(r)} | "
            f"{_f(r['train_img_s'])} | {_f(r['eval_img_s'])} | {_f(r['first_train_s'], 2)} "
            f"({_f(r['train_compile']['compile_s'], 2)}) | {_f(r['first_eval_s'], 2)} | "
            f"{_f(r['peak_rss_mib'], 0)}{dev} | {_f(r['train_gflops'])} | {_f(r['train_util'], pct=True)} | "
            f"{_f(r['eval_gflops'])} | {_f(r['eval_util'], pct=True)} | {_f(disturbance(r), 2)} |")
    if any(_macs(r) != f"{r['macs'] / 1e6:,.1f}" for r in result["ours"] if "macs" in r):
        lines += ["", "MMACs/img: the literal (published) count; in brackets the MACs that run at this input "
                      "size, train / eval (a pool folded into the kernel, auxiliary classifiers off in eval): "
                      "our GFLOP/s and % mm use those, PyTorch's the literal count (it runs the literal layers)."]
    if result.get("failed"):
        lines += ["", f"**Incomplete run**: failed: {', '.join(result['failed'])} (see the rows and the log)."]
    warm = [r for r in result["ours"] if "first_train_warm_s" in r]
    if warm:
        lines += ["", "First step (trace + compile + one step), fresh persistent compilation cache, then the same "
                      "worker again on it (a re-run):", "",
                  "| model | 1st train s cold (XLA compile) | 1st train s warm (XLA compile) | cold / warm "
                  "| 1st eval s cold / warm | cache files | train img/s cold / warm run |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in warm:
            lines.append(
                f"| {r['model']} | {_f(r['first_train_s'], 2)} ({_f(r['train_compile']['compile_s'], 2)}) | "
                f"{_f(r['first_train_warm_s'], 2)} ({_f(r['train_compile_warm']['compile_s'], 2)}) | "
                f"{r['first_train_s'] / r['first_train_warm_s']:.1f}x | {_f(r['first_eval_s'], 2)} / "
                f"{_f(r['first_eval_warm_s'], 2)} | {r['cache_files']} | {_f(r['train_img_s'])} / "
                f"{_f(r['train_img_s_warm'])} |")
    if result.get("torch"):
        rounds = result["settings"].get("rounds", 1)
        ours_p, torch_p = result["settings"]["precision"], result.get("torch_precision", "float32")
        precision = (f"same batch and input, {ours_p} on both sides" if ours_p == torch_p else
                     f"same batch and input but NOT the same precision: ours {ours_p}, PyTorch {torch_p} "
                     f"(torch % mm not given: our matmul rate is {ours_p})")
        lines += ["", f"Ours / PyTorch ({result['torch_framework']}), {precision}, throughput = "
                      "steps x batch / total timed time on both sides (the PyTorch script's formula)"
                      + (f"; {rounds} rounds of ours then PyTorch per model: img/s the median over rounds, "
                         "ratio the median of the rounds' ratios (lowest-highest)" if rounds > 1 else "") + ":", "",
                  "| model | train ours | train torch | **train ratio** | eval ours | eval torch | **eval ratio** "
                  "| 1st step ours / torch s | peak RSS ours / torch MiB | torch train % mm | others' CPUs ours / torch |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in result["ours"]:
            t = result["torch"].get(r["model"])
            if t is None or "train_img_s_mean" not in r:
                continue
            lines.append(
                f"| {r['model']} | {_f(r['train_img_s_mean'])} | {_f(t['train_img_s'])} | "
                f"**{ratio(r, t, 'train'):.2f}x**{_spread(r, 'train')} | {_f(r['eval_img_s_mean'])} | "
                f"{_f(t['eval_img_s'])} | **{ratio(r, t, 'eval'):.2f}x**{_spread(r, 'eval')} | "
                f"{_f(r['first_train_s'], 2)} / {_f(t.get('first_step_s'), 2)} | {_f(r['peak_rss_mib'], 0)} / "
                f"{_f(t.get('peak_rss_mib'), 0)} | {_f(t.get('train_util'), pct=True)} | "
                f"{_f(disturbance(r), 2)} / {_f(disturbance(t), 2)} |")
    if result.get("vs"):
        lines += ["", f"This run / `{result['vs_path']}` (median img/s):", "",
                  "| model | train this | train that | ratio | eval this | eval that | ratio | 1st step this / that s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in result["ours"]:
            v = result["vs"].get(r["model"])
            if v is None or "train_img_s" not in r or "train_img_s" not in v:
                continue
            lines.append(f"| {r['model']} | {_f(r['train_img_s'])} | {_f(v['train_img_s'])} | "
                         f"{r['train_img_s'] / v['train_img_s']:.2f}x | {_f(r['eval_img_s'])} | {_f(v['eval_img_s'])} | "
                         f"{r['eval_img_s'] / v['eval_img_s']:.2f}x | {_f(r['first_train_s'], 2)} / "
                         f"{_f(v['first_train_s'], 2)} |")
    if result.get("input_pipeline"):
        lines += ["", "Input pipeline (benchmarks/input_pipeline.py, batch 128):", "",
                  "| case | shape | augment | examples/s | examples/CPU-s | target |", "|---|---|---|---:|---:|---:|"]
        for r in result["input_pipeline"]["results"]:
            lines.append(f"| {r['case']} | {'x'.join(map(str, r['image_shape']))} | {r['augment']} | "
                         f"{_f(r['examples_per_s'], 0)} | {_f(r['examples_per_cpu_s'], 0)} | {r['target'] or '-'} |")
    return "\n".join(lines) + "\n"


def load_torch_rows(path: str, a) -> dict:
    """PyTorch rows of ``path`` (a list from the PyTorch script, or a JSON of bench.py) for this batch and
    input size. Raises ValueError (one line) for a file that is neither, or a bench.py JSON run with
    other classes. The PyTorch script's own rows carry no class count: its ``--classes`` must match."""
    try:
        rows = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read it: {e}") from None
    if isinstance(rows, dict):  # a JSON of this script: reuse its PyTorch figures
        classes = rows.get("settings", {}).get("classes")
        if classes is not None and classes != a.classes:
            raise ValueError(f"its PyTorch rows are for {classes} classes, this run has --classes {a.classes}")
        rows = list(rows.get("torch", {}).values())
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "model" in r for r in rows):
        raise ValueError("expected the PyTorch script's JSON list of rows or a JSON of bench.py")
    return {r["model"]: r for r in rows if r.get("batch") == a.batch and r.get("res") == a.res}


def print_ours(name: str, r: dict) -> None:
    if "train_img_s" in r:
        print(f"{name:20s} {_shape(r):12s} train {r['train_img_s']:9.1f} img/s  eval {r['eval_img_s']:9.1f} "
              f"img/s  first step {r['first_train_s']:6.2f}s  RSS {r['peak_rss_mib']:7.0f} MiB  "
              f"load {r['loadavg_after']} others {disturbance(r)} CPUs", flush=True)
    else:
        print(f"{name:20s} {r.get('skipped') or r.get('error')}", flush=True)


def print_torch(name: str, r: dict, t: dict | None) -> None:
    if t:
        print(f"{'  torch ' + name:20s} {'':12s} train {t['train_img_s']:9.1f} img/s  eval "
              f"{t['eval_img_s']:9.1f} img/s  first step {t['first_step_s']:6.2f}s  RSS "
              f"{t['peak_rss_mib']:7.0f} MiB  ratio train {ratio(r, t, 'train'):.2f}x "
              f"eval {ratio(r, t, 'eval'):.2f}x others {disturbance(t)} CPUs", flush=True)
