"""Input-pipeline throughput: examples/s of the real ``train.data`` pipeline (no model, no devices).

    python benchmarks/input_pipeline.py                 # all cases, table + JSON
    python benchmarks/input_pipeline.py --steps 300 --out /tmp/ip.json --cases mnist5k,cifar_synthetic

Cases (train pipelines: shuffled, augmented as stated, batch 128, default prefetch / workers):

* ``mnist5k``          : mnist5k, LeNet-5 preprocessing 28x28x1 (no augmentation: MNIST's 'auto')
* ``mnist5k_32``       : mnist5k resized to 32x32x1 (lenet5_classic)
* ``cifar_synthetic``  : synthetic 32x32x3, CIFAR augmentation (pad 4, random crop, flip)
* ``cifar_tfds``       : a CIFAR-like TFDS dataset (PNG-encoded 32x32x3, 10 classes) prepared as
                         ArrayRecord in a temporary folder and read TF-free through tfds.data_source,
                         CIFAR augmentation: the real TFDS path (data.cache=True: decoded into
                         memory once when the pipeline is built, ``setup_s``)
* ``cifar_tfds_nocache``: the same with ``data.cache=False`` (PNG decoded per example, every epoch)
* ``imagenet_synthetic``: synthetic 224x224x3 examples through the Inception random-resized crop

Wall-clock examples/s is what training sees; examples per CPU-second tells the cost when other jobs
share the machine: CPU time of this process (all threads) plus, with ``--num_workers``, that of its
grain worker processes (every live descendant process, read from ``/proc/<pid>/stat`` at the start
and end of the timed steps, plus children reaped meanwhile). Where ``/proc`` is unavailable and
workers are on, the figure is left out (``null``, printed "-") rather than given without them. Targets on the 2-core dev machine: >= 20,000 MNIST and
>= 5,000 augmented 32x32 examples/s.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from bench_args import at_least

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from configs import default  # noqa: E402
from train import data  # noqa: E402

CASES = ("mnist5k", "mnist5k_32", "cifar_synthetic", "cifar_tfds", "cifar_tfds_nocache", "imagenet_synthetic")
TARGETS = {"mnist5k": 20_000, "mnist5k_32": 20_000, "cifar_synthetic": 5_000, "cifar_tfds": 5_000}
# cifar_tfds_nocache: the same dataset decoded record by record every epoch (data.cache=False), for
# reference: that is the path of large / variable-size TFDS datasets.


def _make_cifar_like_tfds(root: str, num_examples: int) -> str:
    """Prepare a CIFAR-shaped TFDS dataset as ArrayRecord without tensorflow (PNG bytes from PIL)."""
    import tensorflow_datasets as tfds  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    class BenchCifarLike(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(32, 32, 3)),
                "label": tfds.features.ClassLabel(num_classes=10)}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(num_examples)}

        def _generate_examples(self, n):
            rng = np.random.default_rng(0)
            for i in range(n):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
                yield i, {"image": buf.getvalue(), "label": int(rng.integers(10))}

    BenchCifarLike(data_dir=root, file_format="array_record").download_and_prepare()
    return "bench_cifar_like"


def _descendants_cpu() -> float | None:
    """CPU seconds (user + system) so far of every live descendant process of this one (grain workers,
    and whatever process starts them), from ``/proc``; None where ``/proc`` cannot be read."""
    try:
        hz = os.sysconf("SC_CLK_TCK")
        parent, cpu = {}, {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:   # gone meanwhile
                continue
            parent[int(d)] = int(fields[1])                      # field 4: ppid
            cpu[int(d)] = (int(fields[11]) + int(fields[12])) / hz  # fields 14, 15: utime, stime
    except (OSError, ValueError, IndexError):
        return None
    ours, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier and p not in ours}
        ours |= frontier
    return sum(cpu[p] for p in ours)


def _cpu_now(workers: bool) -> float | None:
    """This process's CPU seconds, plus its children's (live: /proc; reaped: RUSAGE_CHILDREN) with workers."""
    own = time.process_time()
    if not workers:
        return own
    live = _descendants_cpu()
    if live is None:
        return None
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own + live + reaped.ru_utime + reaped.ru_stime


def _measure(pipe, steps: int, warmup: int, workers: bool) -> dict:
    it = iter(pipe)
    for _ in range(warmup):
        next(it)
    c0, t0 = _cpu_now(workers), time.perf_counter()
    n = 0
    for _ in range(steps):
        b = next(it)
        n += b["image"].shape[0]
    wall, c1 = time.perf_counter() - t0, _cpu_now(workers)
    it.close()
    cpu = None if c0 is None or c1 is None else c1 - c0
    return {"examples": n, "wall_s": round(wall, 4), "cpu_s": None if cpu is None else round(cpu, 4),
            "cpu_includes_workers": workers and cpu is not None,
            "examples_per_s": round(n / wall, 1),
            "examples_per_cpu_s": None if cpu is None else round(n / max(cpu, 1e-9), 1)}


def _num(x) -> str:
    return "-" if x is None else f"{x:,.0f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=at_least(1), default=200, help="batches timed per case")
    ap.add_argument("--warmup", type=at_least(0), default=5)
    ap.add_argument("--batch_size", type=at_least(1), default=128)
    ap.add_argument("--num_workers", type=at_least(0), default=0, help="grain worker processes (config data.num_workers)")
    ap.add_argument("--prefetch", type=at_least(0), default=2, help="config data.prefetch")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    ap.add_argument("--tfds_examples", type=at_least(1), default=10_000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "input_pipeline.json"), help="JSON results")
    args = ap.parse_args(argv)
    unknown = [c for c in args.cases.split(",") if c not in CASES]
    if unknown or not args.cases:
        ap.error(f"--cases: unknown case(s) {', '.join(unknown) or '(none given)'}; allowed: {', '.join(CASES)}")

    def cfg(**kw):
        c = default.get_config().data
        c.num_workers, c.prefetch = args.num_workers, args.prefetch
        for k, v in kw.items():
            setattr(c, k, v)
        return c

    rows, prepared = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            steps = args.steps
            if case == "mnist5k":
                c, shape = cfg(name="mnist5k"), (28, 28, 1)
            elif case == "mnist5k_32":
                c, shape = cfg(name="mnist5k"), (32, 32, 1)
            elif case == "cifar_synthetic":
                c, shape = cfg(name="synthetic", augment="cifar", synthetic_num_examples=10_000), (32, 32, 3)
            elif case in ("cifar_tfds", "cifar_tfds_nocache"):
                if not prepared:
                    t = time.perf_counter()
                    prepared.append(_make_cifar_like_tfds(tmp, args.tfds_examples))
                    print(f"(prepared {args.tfds_examples} PNG examples as ArrayRecord in "
                          f"{time.perf_counter() - t:.1f}s)")
                c = cfg(name=prepared[0], data_dir=tmp, augment="cifar", cache=case == "cifar_tfds")
                shape = (32, 32, 3)
                if case == "cifar_tfds_nocache":
                    steps = max(1, steps // 4)
            elif case == "imagenet_synthetic":
                c, shape = cfg(name="synthetic", augment="imagenet", synthetic_num_examples=256), (224, 224, 3)
                steps = max(1, steps // 10)
            else:
                raise SystemExit(f"unknown case {case!r}")
            t = time.perf_counter()
            pipe = data.load(c, split="train", train=True, batch_size=args.batch_size, image_shape=shape, seed=0,
                             process_index=0, process_count=1)
            setup_s = time.perf_counter() - t
            r = _measure(pipe, steps, args.warmup, workers=args.num_workers > 0)
            r.update(case=case, setup_s=round(setup_s, 2), dataset=c.name, image_shape=list(shape), augment=pipe.preprocessing["augment"],
                     batch_size=args.batch_size, target=TARGETS.get(case))
            rows.append(r)
            ok = "" if r["target"] is None else ("ok" if r["examples_per_s"] >= r["target"] else "BELOW TARGET")
            print(f"{case:20s} {str(tuple(shape)):15s} {r['augment']:9s} {r['examples_per_s']:>12,.0f} ex/s "
                  f"{_num(r['examples_per_cpu_s']):>12s} ex/cpu-s  setup {setup_s:5.1f}s  target {r['target'] or '-'} {ok}", flush=True)

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "loadavg": load},
              "settings": {"steps": args.steps, "warmup": args.warmup, "num_workers": args.num_workers,
                           "prefetch": args.prefetch},
              "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nload average {load}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
