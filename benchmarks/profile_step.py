"""Where the time of the real train (or eval) step goes: an op-level breakdown from a jax.profiler
trace, with each XLA op attributed to a category and to the model layer it comes from.

    python benchmarks/profile_step.py --model resnet18 --batch 64 --res 32
    python benchmarks/profile_step.py --model lenet5 --mode eval --xla-flags=--xla_cpu_use_xnnpack=false
    python benchmarks/profile_step.py --model resnet18 --top 30 --out benchmarks/results/prof_resnet18.json

How: the step is built by ``harness.setup`` exactly as ``bench.py`` builds it, compiled and warmed
up, then ``--steps`` steps run under ``jax.profiler.trace``. XLA:CPU's thunk executor records one
trace event per executed HLO op (a fusion, a library call such as a YNNPACK/XNNPACK/oneDNN fusion, a
convolution, a copy) with its ``hlo_op`` name; the trace is read back with
``jax.profiler.ProfileData``. Each op is looked up in the optimised HLO (``compiled.as_text()``):
its kind, what it computes (convolution / dot / reduce / transpose / elementwise) and the JAX
``op_name`` metadata, which names the layer (``ResNet/layer1_0/conv1``) and whether it belongs to
the forward pass (``jvp(...)``), the backward pass (``transpose(jvp(...))``) or the optimizer.

Convolutions are split into forward, backward-input (data gradient) and backward-kernel (weight
gradient). XLA rewrites the weight gradient into a convolution whose "window" is the output-gradient
map and whose output has the kernel's shape, usually without ``op_name`` metadata: a convolution
whose window is larger than its output map (and whose operands XLA did not swap), or whose output
``dim_labels`` start with the spatial dimensions, is counted as backward-kernel and labelled
``(kernel grad kh x kw x C_in x C_out)``. Other convolutions under ``transpose(...)`` are
backward-input, the rest forward. XLA swaps the operands of a convolution whose input map is smaller
than its kernel (``dim_labels=01fb_...``): those keep the classification of their ``op_name``.
Ops without any metadata (layout copies XLA inserts) are listed under ``(no metadata)``.

Times are summed over ops and divided by the number of steps. Ops can overlap (the thunk executor
runs independent ops concurrently), so the sum may exceed the step's wall time; both are printed.
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from bench_args import at_least


def _args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batch", type=at_least(1), default=64)
    ap.add_argument("--res", type=at_least(1), default=32)
    ap.add_argument("--classes", type=at_least(1), default=10)
    ap.add_argument("--precision", default="float32", choices=("float32", "bfloat16", "float16"))
    ap.add_argument("--mode", default="train", choices=("train", "eval"))
    ap.add_argument("--steps", type=at_least(1), default=3, help="profiled steps")
    ap.add_argument("--warmup", type=at_least(0), default=2)
    ap.add_argument("--top", type=at_least(0), default=25, help="ops listed individually")
    ap.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS (before jax is imported)")
    ap.add_argument("--experiment", help="a candidate change from benchmarks/experiments.py")
    ap.add_argument("--out", help="JSON with the per-op, per-category and per-layer tables")
    ap.add_argument("--compile-only", action="store_true", help="where the first step's time goes instead: "
                    "trace + lowering vs XLA compile, program size, convolutions and distinct conv shapes (the "
                    "persistent compilation cache off); then --steps timed steps without the profiler")
    a = ap.parse_args(argv)
    return a


# ------------------------------------------------------------------------------------- HLO parsing

_INSTR = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (.+?) ([\w\-]+)\((.*)$")


def parse_hlo(text: str) -> tuple[dict, dict]:
    """-> (instructions of every computation by name, computations by name: list of lines)."""
    comps: dict[str, list[str]] = {}
    instrs: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) \(.*\) -> .* \{$", line) or re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if head and not line.startswith(" "):
            current = head.group(1)
            comps[current] = []
            continue
        if current is None:
            continue
        m = _INSTR.match(line)
        if m:
            comps[current].append(line)
            name, shape, opcode, rest = m.groups()
            op_name = re.search(r'op_name="([^"]*)"', rest)
            calls = re.search(r"calls=%?([\w.\-]+)", rest)
            instrs[name] = {"shape": shape, "opcode": opcode, "op_name": op_name.group(1) if op_name else "",
                            "calls": calls.group(1) if calls else None, "line": line.strip(), "comp": current}
    return instrs, comps


def _called_lines(name: str, instrs: dict, comps: dict, depth: int = 0) -> list[str]:
    ins = instrs.get(name)
    if not ins or not ins["calls"] or depth > 3:
        return []
    out = []
    for line in comps.get(ins["calls"], []):
        out.append(line)
        m = _INSTR.match(line)
        if m and m.group(1) in instrs and instrs[m.group(1)]["calls"]:
            out += _called_lines(m.group(1), instrs, comps, depth + 1)
    return out


def _layer(op_name: str) -> str:
    """'jit(wrapped)/shard_map/transpose(jvp(ResNet))/layer1_0/conv1/conv_general_dilated' ->
    'layer1_0/conv1'; optimizer and loss ops -> their first meaningful part."""
    parts = [p for p in op_name.split("/") if p and not p.startswith(("jit(", "pjit(", "shard_map", "checkpoint"))]
    parts = [re.sub(r"^(transpose\()?(jvp\()?([\w]+)\)*$", r"\3", p) for p in parts]
    if op_name.startswith("("):
        return op_name
    if len(parts) >= 2:
        return "/".join(parts[1:-1]) or parts[-1]
    return parts[0] if parts else "(no metadata)"


def classify(name: str, instrs: dict, comps: dict) -> dict:
    ins = instrs.get(name)
    if ins is None:
        return {"category": "other", "layer": "?", "detail": ""}
    body = [ins["line"]] + _called_lines(name, instrs, comps)
    text = "\n".join(body)
    # op_name of the most telling instruction inside (a conv / dot / reduce), else the op's own
    op_names = [instrs[m.group(1)]["op_name"] for m in (_INSTR.match(l) for l in body) if m and m.group(1) in instrs]
    key_line = next((l for l in body if " convolution(" in l), None) or next((l for l in body if " dot(" in l), None) \
        or next((l for l in body if " reduce(" in l or " reduce-window(" in l), None)
    key_op = ""
    if key_line:
        mm = _INSTR.match(key_line)
        key_op = instrs.get(mm.group(1), {}).get("op_name", "") if mm else ""
    op_name = key_op or ins["op_name"] or next((o for o in op_names if o), "")
    backward = "transpose(" in op_name
    optimizer = any(k in op_name for k in ("optax", "tx.update", "/update", "apply_updates", "sgd", "trace")) \
        and "jvp(" not in op_name
    detail = ""
    if " convolution(" in text:
        cl = key_line or ""
        dims = re.search(r"dim_labels=([\w]+)_([\w]+)->([\w]+)", cl)
        groups = re.search(r"feature_group_count=(\d+)", cl)
        window = re.search(r"window=\{size=([\dx]+)", cl)
        lhs_l, out_l = (dims.group(1), dims.group(3)) if dims else ("", "")
        out_shape = re.match(r"\s*(?:ROOT )?%?[\w.\-]+ = \w+\[([\d,]*)\]", cl)
        out_dims = [int(d) for d in out_shape.group(1).split(",")] if out_shape and out_shape.group(1) else []
        out_spatial = math.prod(out_dims[i] for i, l in enumerate(out_l) if l in "01") if len(out_dims) == len(out_l) else 0
        win = math.prod(int(v) for v in window.group(1).split("x")) if window else 0
        swapped = lhs_l.startswith("01")  # XLA swapped the operands (input smaller than kernel)
        if out_l.startswith("01") or (not swapped and out_spatial and win > out_spatial):
            # weight gradient: the "window" is the output-gradient map, the output the kernel's shape
            category = "conv bwd-kernel"
            if not op_name and len(out_dims) == 4 and out_l == "b01f":
                op_name = f"(kernel grad {out_dims[1]}x{out_dims[2]}x{out_dims[0]}x{out_dims[3]})"
        elif backward:
            category = "conv bwd-input"
        else:
            category = "conv fwd"
        shape = re.match(r"\s*(?:ROOT )?%?[\w.\-]+ = (\S+)", cl)
        detail = (f"{shape.group(1) if shape else ''} k{window.group(1) if window else '?'}"
                  f"{' g' + groups.group(1) if groups and groups.group(1) != '1' else ''} {dims.group(0) if dims else ''}")
    elif " dot(" in text:
        category = "dot bwd" if backward else ("dot" if not optimizer else "optimizer")
    elif optimizer:
        category = "optimizer"
    elif " reduce-window(" in text or "select-and-scatter(" in text:
        category = "pooling" + (" bwd" if backward else "")
    elif " reduce(" in text:
        category = ("norm/reduce" + (" bwd" if backward else ""))
    elif ins["opcode"] in ("copy",) or "transpose" in ins["opcode"] or (" transpose(" in text and " add(" not in text
                                                                         and " multiply(" not in text):
        category = "transpose/copy"
    elif ins["opcode"] in ("custom-call", "sort") or "TopK" in text:
        category = "metrics (top-k)"
    else:
        category = "elementwise" + (" bwd" if backward else "")
    return {"category": category, "layer": _layer(op_name), "detail": detail, "opcode": ins["opcode"],
            "kind": (re.search(r'"kind":"(\w+)"', ins["line"]) or re.search(r"kind=(k\w+)", ins["line"]) or [None, ""])[1],
            "shape": ins["shape"][:60], "op_name": op_name}


# ------------------------------------------------------------------------------------- trace parsing

def read_trace(directory: str) -> tuple[dict, float]:
    """-> ({hlo_op: [total ns, count]}, ns covered by the executions)."""
    from jax.profiler import ProfileData  # noqa: PLC0415

    path = sorted(glob.glob(os.path.join(directory, "**", "*.xplane.pb"), recursive=True))[-1]
    pd = ProfileData.from_file(path)
    ops: dict[str, list] = collections.defaultdict(lambda: [0, 0])
    for plane in pd.planes:
        for line in plane.lines:
            for e in line.events:
                stats = dict(e.stats)
                op = stats.get("hlo_op")
                if op and not e.name.startswith("end:"):
                    ops[op][0] += e.duration_ns
                    ops[op][1] += 1
    return dict(ops), 0.0


def _temp_mib(compiled) -> float | None:
    """XLA's temporary buffer of the compiled program (all intermediates of one call), MiB."""
    analysis = compiled.memory_analysis()
    return None if analysis is None else round(analysis.temp_size_in_bytes / 2**20, 1)


def distinct_loop_kernels(hlo: str) -> int:
    """How many distinct kernels XLA:CPU generates code for among the fusions of an optimised
    module: one per distinct (output shape, fused computation) with names and metadata stripped,
    library (YNNPACK / oneDNN) fusions left out. Its cold compile time follows this number, not the
    number of fusions (benchmarks/README.md, "Round 7")."""
    instrs, comps = parse_hlo(hlo)
    bodies = set()
    for ins in instrs.values():
        if ins["opcode"] != "fusion" or "kind=kCustom" in ins["line"]:
            continue
        body = [re.sub(r"%[\w.\-]+", "%", re.sub(r", metadata=\{[^}]*\}", "", line)).strip()
                for line in comps.get(ins["calls"], [])]
        bodies.add((ins["shape"], "\n".join(body)))
    return len(bodies)


CONV_SIG = re.compile(r"stablehlo\.convolution\(.*?\)\s*(dim_numbers.*?)\s*\{.*?:\s*(\(.*?\)\s*->\s*tensor<[^>]*>)")


def compile_profile(a, s) -> int:
    """Trace + lowering and XLA compile times of the step, the size of the program before and after
    XLA, its convolutions and how many distinct (shapes, dimension numbers) they have."""
    import jax  # noqa: PLC0415

    state = s.state
    args = (state, s.batch) if a.mode == "train" else (s.variables(state), s.batch)
    fn = s.train_fn if a.mode == "train" else s.eval_fn
    t = time.perf_counter()
    lowered = fn.lower(*args)
    lower_s = time.perf_counter() - t
    text = lowered.as_text()
    convs = [m.group(1) + " " + m.group(2) for m in CONV_SIG.finditer(text)]
    t = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t
    hlo = compiled.as_text()
    opt_convs = len(re.findall(r"= \S+ convolution\(", hlo))
    fusions = len(re.findall(r"= \S+ fusion\(", hlo))
    kernels = distinct_loop_kernels(hlo)
    walls = []
    for _ in range(a.steps):
        t = time.perf_counter()
        out = compiled(*args)
        jax.block_until_ready(out)
        walls.append(time.perf_counter() - t)
        if a.mode == "train":
            args = (out[0], s.batch)
    r = {"model": a.model, "mode": a.mode, "batch": a.batch, "input_shape": list(s.input_shape),
         "xla_flags": os.environ.get("XLA_FLAGS", ""), "trace_lower_s": round(lower_s, 2),
         "xla_compile_s": round(compile_s, 2), "stablehlo_lines": text.count("\n"),
         "stablehlo_convolutions": len(convs), "distinct_conv_shapes": len(set(convs)),
         "optimised_hlo_lines": hlo.count("\n"), "optimised_convolutions": opt_convs, "fusions": fusions,
         "distinct_loop_kernels": kernels, "temp_mib": _temp_mib(compiled),
         "step_ms": [round(w * 1e3, 1) for w in walls], "loadavg": os.getloadavg()[0]}
    print(json.dumps(r))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(r, indent=1))
    return 0


def main(argv=None) -> int:
    a = _args(argv)
    if argv is None:   # as a training run starts (train/host_memory.py): huge pages for XLA's buffers
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from train import host_memory  # noqa: PLC0415

        if (status := host_memory.start_command_line(argv)) is not None:
            return status
    if a.compile_only:   # cold: never a program from the persistent compilation cache
        os.environ["ZOO_COMPILE_CACHE"] = "off"
    if a.xla_flags:
        os.environ["XLA_FLAGS"] = " ".join(x for x in (os.environ.get("XLA_FLAGS", ""), a.xla_flags) if x)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import jax  # noqa: PLC0415
    import harness  # noqa: PLC0415
    if a.model not in harness.zoo.list_models():   # before anything is built (zoo needs XLA_FLAGS set: here)
        print(f"profile_step.py: error: --model {a.model}: unknown model name; allowed: the names of "
              f"zoo.list_models() (python -m zoo lists them)", file=sys.stderr)
        return 2
    if a.experiment:
        import experiments  # noqa: PLC0415
        if a.experiment not in experiments.EXPERIMENTS:
            print(f"profile_step.py: error: --experiment {a.experiment}: allowed {', '.join(experiments.EXPERIMENTS)}",
                  file=sys.stderr)
            return 2
        experiments.apply(a.experiment)

    if a.compile_only:
        return compile_profile(a, harness.setup(a.model, batch=a.batch, res=a.res, classes=a.classes,
                                                precision=a.precision))
    s = harness.setup(a.model, batch=a.batch, res=a.res, classes=a.classes, precision=a.precision)
    state = s.state
    if a.mode == "train":
        lowered = s.train_fn.lower(state, s.batch)
    else:
        lowered = s.eval_fn.lower(s.variables(state), s.batch)
    t = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t
    instrs, comps = parse_hlo(compiled.as_text())
    box = {"state": state}

    def run():
        if a.mode == "train":
            box["state"], m = compiled(box["state"], s.batch)
            return box["state"], m
        return compiled(s.variables(box["state"]), s.batch)

    for _ in range(a.warmup):
        jax.block_until_ready(run())
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            for _ in range(a.steps):
                t = time.perf_counter()
                jax.block_until_ready(run())
                walls.append(time.perf_counter() - t)
        ops, _ = read_trace(tmp)
    step_ms = statistics.median(walls) * 1e3
    rows = []
    for op, (ns, count) in ops.items():
        c = classify(op, instrs, comps)
        rows.append({"op": op, "ms_per_step": ns / 1e6 / a.steps, "calls_per_step": count / a.steps, **c})
    rows.sort(key=lambda r: -r["ms_per_step"])
    total = sum(r["ms_per_step"] for r in rows)
    by_cat = collections.Counter()
    by_layer = collections.Counter()
    for r in rows:
        by_cat[r["category"]] += r["ms_per_step"]
        by_layer[r["layer"]] += r["ms_per_step"]

    macs = harness.zoo.macs(s.model, s.input_shape)
    print(f"{a.model} {a.mode} batch {a.batch} input {s.input_shape} {a.precision}  "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"step wall (median of {a.steps}, under the profiler): {step_ms:.1f} ms = {a.batch / step_ms * 1e3:.1f} img/s; "
          f"sum of op times {total:.1f} ms; compile {compile_s:.1f}s; load {os.getloadavg()[0]:.2f}")
    print("\nby category (ms/step, % of op time):")
    for cat, ms in by_cat.most_common():
        print(f"  {cat:22s} {ms:9.2f}  {100 * ms / total:5.1f}%")
    print("\nby layer (top 15):")
    for lay, ms in by_layer.most_common(15):
        print(f"  {lay[:60]:60s} {ms:9.2f}  {100 * ms / total:5.1f}%")
    print(f"\ntop {a.top} ops:")
    for r in rows[:a.top]:
        print(f"  {r['ms_per_step']:8.2f} ms  {r['category']:16s} {r['kind'] or r['opcode']:14s} {r['layer'][:36]:36s} "
              f"{r['detail'] or r['shape']}")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({
            "model": a.model, "mode": a.mode, "batch": a.batch, "input_shape": list(s.input_shape),
            "precision": a.precision, "xla_flags": os.environ.get("XLA_FLAGS", ""), "macs": macs,
            "step_ms": step_ms, "op_sum_ms": total, "loadavg": os.getloadavg(),
            "by_category": dict(by_cat.most_common()), "by_layer": dict(by_layer.most_common()), "ops": rows},
            indent=1))
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
