"""Training / eval throughput, time to first step, memory and FLOP utilisation per architecture,
measured with the project's real train and eval steps, optionally beside PyTorch + torchvision.

    python benchmarks/bench.py                                   # one model per family, batch 64, 32x32
    python benchmarks/bench.py --models resnet18,resnet50 --batch 16 --res 224
    python benchmarks/bench.py --run-torch --torch-python /work/torch-ref/bin/python   # + PyTorch, ratios
    python benchmarks/bench.py --torch-json torch.json           # compare with an earlier torch run
    python benchmarks/bench.py --xla-flags=--xla_cpu_use_xnnpack=false --vs-json results/base.json
    python benchmarks/bench.py --precision bfloat16              # bf16 compute (fp32 params), GPU/TPU

Every model runs in a fresh worker process (``--_worker``; peak RSS is then per model). In it: the
model is built as ``train.loop`` builds it (``zoo.create(name, axis_name=parallel.AXIS,
dtype=precision, num_classes=classes)``), the optimizer is ``train.optim.make_optimizer`` (SGD
momentum 0.9, constant lr 0.01, no weight decay: the PyTorch script's optimizer), the state comes
from ``train.step.create_state`` and ``train.parallel.replicate``, one random batch of the requested
shape is placed with ``parallel.put_batch`` and reused every step, and the steps are
``parallel.compile_step(train_step)`` / ``compile_step(eval_step)`` on all local devices.

Figures (README.md explains each):
* ``first_train_s`` / ``first_eval_s``: wall time of the first call (trace + compile + one run);
  trace/lower and XLA compile seconds come from jax.monitoring events.
* ``train_img_s`` / ``eval_img_s``: batch / median per-step time, each step ``block_until_ready``,
  over ``--steps`` steps after ``--warmup``; ``*_img_s_mean`` = steps * batch / total time (the
  PyTorch script's formula: the comparison ratios use it on both sides).
* ``peak_rss_mib``: peak resident memory of the worker process (``ru_maxrss``); ``device_peak_mib``
  from ``device.memory_stats()`` where the backend has it (GPU/TPU).
* ``macs``: ``zoo.macs(model, input_shape)`` per image, the literal (published) count;
  ``train_macs_executed`` / ``eval_macs_executed``: what runs at that input size
  (``harness.executed_macs``: VGG at 32x32 folds its 25088 x 4096 layer to 512 x 4096). GFLOP/s
  (from the executed MACs; PyTorch rows: the literal ones): eval 2 x MACs x img/s; train
  3 x 2 x MACs x img/s (backward ~ 2 x forward); ``*_util``: that over the rate of a large dense
  matmul (``--matmul-size``, compute dtype) timed in the same run (best of a run before and after).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from train import host_memory  # noqa: E402  (light: no jax)
from bench_report import print_ours, print_torch, combine_rounds, derive, markdown  # noqa: E402
import bench_cli  # noqa: E402
from bench_runs import LAST_RUN, loadavg, retrying, run_child, tail, probe  # noqa: E402
RESULTS = HERE / "results"
DEFAULT_MODELS = "lenet5,alexnet,vgg11_bn,resnet18,densenet121,mobilenet_v2,shufflenet_v2_x1_0"
TORCH_SCRIPT = ROOT.parent / "shared" / "torch_baseline" / "bench.py"
# zoo names that are torchvision builders of the same architecture (the others are ours only)
TORCHVISION = re.compile(r"^(alexnet|vgg\d+(_bn)?|resnet(18|34|50|101|152)|resnext\d+_\d+x\d+d|wide_resnet\d+_2|"
                         r"densenet\d+|mobilenet_v2|mobilenet_v3_(large|small)|shufflenet_v2_x\d_\d|googlenet|"
                         r"inception_v3|squeezenet1_[01]|mnasnet\d_\d+|efficientnet_(b\d|v2_[sml]))$")


# =============================================================================== worker side

def _monitor():
    """Collect jax.monitoring durations (trace, lowering, backend compile) of the next calls."""
    import jax  # noqa: PLC0415

    events: dict[str, float] = {}

    def listener(name, secs, **_):
        events[name] = events.get(name, 0.0) + secs

    jax.monitoring.register_event_duration_secs_listener(listener)
    return events


def _split(events: dict) -> dict:
    def pick(*keys):
        return round(sum(v for k, v in events.items() if any(key in k for key in keys)), 3)
    return {"trace_s": pick("jaxpr_trace_duration"), "lower_s": pick("jaxpr_to_mlir_module_duration"),
            "compile_s": pick("backend_compile_duration")}


def _time_steps(fn, n: int) -> list[float]:
    import jax  # noqa: PLC0415
    times = []
    for _ in range(n):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return times


def worker_model(a) -> dict:
    import resource  # noqa: PLC0415

    import jax  # noqa: PLC0415
    import harness  # noqa: PLC0415
    import zoo  # noqa: PLC0415

    if a.experiment:
        import experiments  # noqa: PLC0415
        experiments.apply(a.experiment)
    events = _monitor()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    no_aux = {"aux_logits": False} if a.no_aux and "aux_logits" in zoo.model_info(a.model).options() else {}
    s = harness.setup(a.model, batch=a.batch, res=a.res, classes=a.classes, precision=a.precision,
                      parallelism=a.parallelism, model_kwargs=no_aux)
    setup_s = time.perf_counter() - t0
    macs = int(harness.zoo.macs(s.model, s.input_shape))
    executed = {}
    for kind in ("train", "eval"):   # what runs at this input size (harness.executed_macs): the GFLOP/s use it
        try:
            executed[f"{kind}_macs_executed"] = int(harness.executed_macs(s.model, s.input_shape, train=kind == "train"))
        except Exception as e:  # noqa: BLE001  (then the step itself fails below, with its own message)
            print(f"({kind} executed MACs unavailable: {e})", file=sys.stderr)
    events.clear()

    # ---- train: the first call compiles
    state = s.state
    t = time.perf_counter()
    state, m = s.train_fn(state, s.batch)
    jax.block_until_ready((state, m))
    first_train = time.perf_counter() - t
    train_compile = _split(events)
    events.clear()

    box = {"state": state}

    def train_once():
        box["state"], metrics = s.train_fn(box["state"], s.batch)
        box["m"] = metrics
        return box["state"], metrics

    _time_steps(train_once, a.warmup)
    train_times = _time_steps(train_once, a.steps)
    loss = float(jax.device_get(box["m"]["loss"]))
    state = box["state"]

    # ---- eval
    variables = s.variables(state)
    t = time.perf_counter()
    jax.block_until_ready(s.eval_fn(variables, s.batch))
    first_eval = time.perf_counter() - t
    eval_compile = _split(events)
    _time_steps(lambda: s.eval_fn(variables, s.batch), a.warmup)
    eval_times = _time_steps(lambda: s.eval_fn(variables, s.batch), a.steps)

    xla_flops = None
    if a.xla_cost:  # XLA's own count for the train step (per device, unoptimised HLO), a cross-check
        try:
            cost = s.train_fn.lower(state, s.batch).cost_analysis()
            cost = cost[0] if isinstance(cost, (list, tuple)) else cost
            xla_flops = float(cost["flops"]) * s.plan.num_devices / a.batch
        except Exception as e:  # noqa: BLE001  (optional figure)
            print(f"(cost analysis unavailable: {e})", file=sys.stderr)

    dev = jax.local_devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    med_t, med_e = statistics.median(train_times), statistics.median(eval_times)
    return {
        "model": a.model, "framework": f"jax {jax.__version__}", "backend": jax.default_backend(),
        "device": dev.device_kind, "num_devices": s.plan.num_devices, "parallelism": a.parallelism,
        "precision": a.precision, "batch": a.batch, "res": a.res, "input_shape": list(s.input_shape),
        "note": s.note, "classes": a.classes, "params": s.params, "macs": macs, **executed,
        "setup_s": round(setup_s, 3), "init_s": round(s.init_s, 3),
        "first_train_s": round(first_train, 3), "train_compile": train_compile,
        "first_eval_s": round(first_eval, 3), "eval_compile": eval_compile,
        "train_step_ms": [round(x * 1e3, 3) for x in train_times],
        "eval_step_ms": [round(x * 1e3, 3) for x in eval_times],
        "train_img_s": a.batch / med_t, "train_img_s_mean": a.batch * len(train_times) / sum(train_times),
        "eval_img_s": a.batch / med_e, "eval_img_s_mean": a.batch * len(eval_times) / sum(eval_times),
        "train_loss": loss, "xla_train_flops_per_img": xla_flops,
        "rss_after_import_mib": round(rss0, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "device_peak_mib": (round(stats["peak_bytes_in_use"] / 2 ** 20, 1)
                            if stats and "peak_bytes_in_use" in stats else None),
        "xla_flags": os.environ.get("XLA_FLAGS", ""), "experiment": a.experiment,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),   # train/host_memory.py
    }


def worker_matmul(a) -> dict:
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}[a.precision]
    n = a.matmul_size
    kx, ky = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (n, n), dtype)
    y = jax.random.normal(ky, (n, n), dtype)
    f = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=dtype))
    jax.block_until_ready(f(x, y))
    times = _time_steps(lambda: f(x, y), a.matmul_reps)
    flop = 2.0 * n ** 3
    return {"n": n, "dtype": a.precision, "backend": jax.default_backend(),
            "device": jax.local_devices()[0].device_kind, "times_s": [round(t, 4) for t in times],
            "gflops_median": flop / statistics.median(times) / 1e9, "gflops_best": flop / min(times) / 1e9,
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


# =============================================================================== orchestration

def _worker_cmd(a, kind: str, out: Path, model: str | None = None) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", kind, "--_result", str(out),
           "--batch", str(a.batch), "--res", str(a.res), "--classes", str(a.classes), "--steps", str(a.steps),
           "--warmup", str(a.warmup), "--precision", a.precision, "--parallelism", a.parallelism,
           "--matmul-size", str(a.matmul_size), "--matmul-reps", str(a.matmul_reps)]
    if model:
        cmd += ["--models", model]
    if a.experiment:
        cmd += ["--experiment", a.experiment]
    if not a.xla_cost:
        cmd.append("--no-xla-cost")
    if a.no_aux:
        cmd.append("--no-aux")
    return cmd


def _env(a) -> dict:
    env = dict(os.environ)
    flags = " ".join(x for x in (env.get("XLA_FLAGS", ""), a.xla_flags) if x)
    if flags:
        env["XLA_FLAGS"] = flags
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_matmul(a, tmp: Path) -> dict | None:
    out = tmp / "matmul.json"
    rc, rss, wall = run_child(_worker_cmd(a, "matmul", out), _env(a), a.timeout, tmp / "matmul.log")
    if rc != 0:
        print(f"matmul worker failed (rc {rc}):\n{tail(tmp / 'matmul.log')}", file=sys.stderr)
        return None
    r = json.loads(out.read_text())
    r.update(loadavg=loadavg(), other_cpu=LAST_RUN.get("other_cpu"), steal=LAST_RUN.get("steal"))
    print(f"dense matmul {r['n']}^2 {r['dtype']}: {r['gflops_median']:.1f} GFLOP/s median, "
          f"{r['gflops_best']:.1f} best (load {r['loadavg']}, other CPU {r['other_cpu']}, steal {r['steal']})", flush=True)
    return r


def run_ours(a, model: str, tmp: Path) -> dict:
    out, log = tmp / f"{model}.json", tmp / f"{model}.log"
    load0 = loadavg()
    cache = tmp / f"compile_cache_{model}"   # fresh: the first step is a cold compile, whatever ran before
    shutil.rmtree(cache, ignore_errors=True)
    # started as a training run starts (train/host_memory.py: huge pages for XLA's buffers)
    env = host_memory.environment({**_env(a), "ZOO_COMPILE_CACHE": str(cache) if a.warm else "off"})
    rc, rss, wall = run_child(_worker_cmd(a, "model", out, model), env, a.timeout, log)
    if rc == 3:  # Skip
        return {"model": model, "batch": a.batch, "res": a.res, "skipped": tail(log, 1)}
    if rc != 0 or not out.exists():
        print(f"{model}: worker failed (rc {rc}):\n{tail(log)}", file=sys.stderr, flush=True)
        return {"model": model, "batch": a.batch, "res": a.res, "error": f"rc {rc}: {tail(log, 3)}"}
    r = json.loads(out.read_text())
    r.update(child_peak_rss_mib=round(rss, 1), worker_wall_s=round(wall, 1), loadavg_before=load0,
             loadavg_after=loadavg(), worker_cpu_s=LAST_RUN.get("cpu_s"), other_cpu=LAST_RUN.get("other_cpu"),
             steal=LAST_RUN.get("steal"))
    if a.warm:  # the same worker again on the cache the first one filled: the first step of a re-run
        short = argparse.Namespace(**{**vars(a), "steps": 2, "warmup": 0, "xla_cost": False})
        rc, _, _ = run_child(_worker_cmd(short, "model", out, model), env, a.timeout, tmp / f"{model}_warm.log")
        if rc == 0:
            w = json.loads(out.read_text())
            r.update(first_train_warm_s=w["first_train_s"], first_eval_warm_s=w["first_eval_s"],
                     train_compile_warm=w["train_compile"], train_img_s_warm=w["train_img_s"],
                     cache_files=len(list(cache.glob("*-cache"))), loadavg_warm=loadavg())
    shutil.rmtree(cache, ignore_errors=True)
    return r


def run_torch(a, model: str, tmp: Path) -> dict | None:
    out, log = tmp / f"torch_{model}.json", tmp / f"torch_{model}.log"
    wrapper = [str(Path(__file__).with_name("torch_no_aux.py"))] if a.no_aux else []
    cmd = [a.torch_python, *wrapper, str(a.torch_script), "--models", model, "--batch", str(a.batch), "--res", str(a.res),
           "--classes", str(a.classes), "--steps", str(a.steps), "--warmup", str(a.warmup), "--out", str(out)]
    if a.torch_channels_last:
        cmd.append("--channels-last")
    load0 = loadavg()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    rc, rss, wall = run_child(cmd, env, a.timeout, log)
    if rc != 0 or not out.exists():
        print(f"torch {model}: failed (rc {rc}):\n{tail(log)}", file=sys.stderr, flush=True)
        return None
    r = json.loads(out.read_text())[0]
    r.update(peak_rss_mib=round(rss, 1), worker_wall_s=round(wall, 1), loadavg_before=load0,
             loadavg_after=loadavg(), worker_cpu_s=LAST_RUN.get("cpu_s"), other_cpu=LAST_RUN.get("other_cpu"),
             steal=LAST_RUN.get("steal"), command=shlex.join(cmd))
    return r


def main(argv=None) -> int:
    ap = bench_cli.parser(__doc__, DEFAULT_MODELS, str(TORCH_SCRIPT))
    a = ap.parse_args(argv)
    if not a._worker:
        vs, torch_rows = bench_cli.check_args(ap, a)

    if a._worker:
        a.model = a.models
        try:
            r = worker_model(a) if a._worker == "model" else worker_matmul(a)
        except Exception as e:
            import harness  # noqa: PLC0415
            if isinstance(e, harness.Skip):
                print(f"skipped: {e}")
                return 3
            raise
        Path(a._result).write_text(json.dumps(r, indent=1))
        return 0

    stem = f"bench_b{a.batch}_r{a.res}" + ("" if a.precision == "float32" else f"_{a.precision}")
    out_json = Path(a.out_json or RESULTS / f"{stem}.json")
    out_md = Path(a.out_md or RESULTS / f"{stem}.md")
    from zoo.files import same_file  # noqa: PLC0415  (as write_outputs: zoo only where it is used)

    for flag, out in (("--out-json", out_json), ("--out-md", out_md)):
        if a.vs_json and same_file(out, a.vs_json):   # the baseline would be replaced by this run
            ap.error(f"{flag} {out} is the --vs-json file this run compares with; name another {flag}")
    # input_pipeline.py's JSON: beside --out-json when it is given, else results/input_pipeline.json
    ip_out = out_json.with_name(out_json.stem + "_input_pipeline.json") if a.out_json else RESULTS / "input_pipeline.json"
    torch_precision = "float32"   # ../shared/torch_baseline/bench.py has no precision option: fp32 only
    if a.precision != torch_precision and (a.run_torch or a.torch_json):
        print(f"warning: --precision {a.precision} against PyTorch {torch_precision} (its script has no precision "
              f"option): the ratios compare different precisions; the table and JSON say so", file=sys.stderr)
    for out in (out_json, out_md) + ((ip_out,) if a.input_pipeline else ()):
        out.parent.mkdir(parents=True, exist_ok=True)
    models = [m for m in a.models.split(",") if m]
    failed: list[str] = []
    import jax  # noqa: PLC0415  (the parent only reads versions and devices)
    result = {"command": shlex.join([sys.executable, *sys.argv]),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": _cpu_name(),
                          "python": platform.python_version(), "jax": jax.__version__,
                          "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}"},
              "settings": {k: getattr(a, k) for k in ("batch", "res", "classes", "steps", "warmup", "precision",
                                                       "parallelism", "xla_flags", "experiment", "matmul_size", "warm",
                                                       "rounds")},
              "loadavg_start": loadavg(), "ours": [], "torch": {}}
    if a.run_torch or a.torch_json:
        result["torch_precision"] = torch_precision
    result["probe_start"] = probe()
    print(f"load average {result['loadavg_start']}, others take {result['probe_start']} CPUs (probe); "
          f"{len(models)} model(s), batch {a.batch}, {a.res}x{a.res}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        tmp = Path(tmp)
        mm = [run_matmul(a, tmp)]
        for name in models:
            rounds = []
            for _ in range(a.rounds if a.run_torch else 1):
                r = retrying(a, lambda: run_ours(a, name, tmp), name)
                print_ours(name, r)
                t = None
                if a.run_torch and "train_img_s" in r and TORCHVISION.match(name) and r["note"] == "":
                    t = retrying(a, lambda: run_torch(a, name, tmp), "torch " + name)
                    print_torch(name, r, t)
                    if t is None:
                        failed.append(f"torch {name}")
                rounds.append((r, t))
                if t is None:  # nothing to pair with: one round is all there is to measure
                    break
            r, t = combine_rounds(rounds)
            if "error" in r:
                failed.append(name)
            result["ours"].append(r)
            if t:
                torch_rows[name] = t
        mm.append(run_matmul(a, tmp))
        if a.input_pipeline:
            rc, _, _ = run_child([sys.executable, str(HERE / "input_pipeline.py"), "--out", str(ip_out)], _env(a),
                                 a.timeout, tmp / "ip.log")
            print(tail(tmp / "ip.log", 12))
            if rc == 0:
                result["input_pipeline"] = json.loads(ip_out.read_text())
                result["input_pipeline_path"] = str(ip_out)
            else:
                print(f"input pipeline failed (rc {rc})", file=sys.stderr)
                failed.append("input pipeline")
    failed += [f"matmul ({when})" for m, when in zip(mm, ("start", "end")) if m is None]
    mm = [m for m in mm if m]
    result["matmul"] = mm
    result["matmul_peak_gflops"] = max((m["gflops_median"] for m in mm), default=None)
    derive(result["ours"], result["matmul_peak_gflops"])
    for t in torch_rows.values():  # same architecture: our MAC count
        ours = next((r for r in result["ours"] if r["model"] == t["model"] and "macs" in r), None)
        if ours:
            t["macs"] = ours["macs"]
    # PyTorch's % mm only against a matmul of its own precision (fp32); ours may be bf16 / fp16
    derive(list(torch_rows.values()), result["matmul_peak_gflops"] if a.precision == torch_precision else None)
    result["torch"] = torch_rows
    result["torch_framework"] = next((t.get("framework") for t in torch_rows.values()), None)
    if vs is not None:
        result["vs_path"] = a.vs_json
        result["vs"] = {r["model"]: r for r in vs["ours"]}
    result["loadavg_end"] = loadavg()
    result["probe_end"] = probe()
    result["failed"] = failed
    if models and all("error" in r for r in result["ours"]):
        print(f"\nevery model failed ({', '.join(models)}): nothing written to {out_json} / {out_md}", file=sys.stderr)
        return 1
    md = write_outputs(result, out_json, out_md)
    print("\n" + md + f"\nwrote {out_json} and {out_md}")
    if failed:
        print(f"incomplete run: failed: {', '.join(failed)} (marked in the report)", file=sys.stderr)
        return 1
    return 0


def write_outputs(result: dict, out_json: Path, out_md: Path) -> str:
    """Write the JSON and the Markdown report (returned), each whole or not at all
    (``zoo.files.written_atomically``): a failure leaves an earlier run's files as they were."""
    from zoo.files import written_atomically  # noqa: PLC0415

    md = markdown(result)   # before anything is replaced: a report that fails to build replaces nothing
    for path, text in ((out_json, json.dumps(result, indent=1) + "\n"), (out_md, md)):
        with written_atomically(path) as tmp:
            Path(tmp).write_text(text)
    return md


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
