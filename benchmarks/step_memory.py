"""Where the first train steps' extra time goes on the host: wall time, page faults and system CPU
time of each of the first steps of the real compiled train step, with an optional pause before one.

    python benchmarks/step_memory.py --model resnet50 --batch 16 --res 224 --steps 6
    python benchmarks/step_memory.py --model resnet50 --steps 6 --pause 6 --pause-before 4
    ZOO_HOST_MEMORY=system python benchmarks/step_memory.py --model resnet50     # glibc's default
    python benchmarks/step_memory.py --touch-gib 2.2 --pages huge --steps 4 [--pause 3 --pause-before 1]

The step is built by ``harness.setup`` as ``bench.py`` builds it, lowered and compiled first (not
timed here), then called ``--steps`` times, each waited for. Per step: wall seconds, minor page
faults, system and user CPU seconds (``getrusage`` of this process, all threads). The process starts
as the training command lines start (``train.host_memory``: huge pages for large blocks unless
``ZOO_HOST_MEMORY=system``). One JSON line per run. The persistent compilation cache is off.

``--touch-gib G`` measures the memory alone, without JAX: each "step" maps G GiB of private anonymous
memory (``--pages huge``: advised for transparent huge pages, as glibc's ``hugetlb=1`` advises its
large blocks; ``small``: not), writes one byte per 4 KiB page and unmaps it.
benchmarks/README.md, "Round 12", has what it showed.
"""
from __future__ import annotations

import argparse
import json
import mmap
import os
import resource
import sys
import time
from pathlib import Path
from bench_args import at_least

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]


def _usage() -> tuple[int, float, float]:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_minflt, u.ru_stime, u.ru_utime


def _timed_steps(a, fn) -> list[dict]:
    """``fn()`` ``a.steps`` times (after a pause of ``a.pause`` s before step ``a.pause_before``): per call
    wall seconds, minor page faults, system and user CPU seconds."""
    steps = []
    for i in range(a.steps):
        if a.pause and i == a.pause_before:
            time.sleep(a.pause)
        f0, s0, u0 = _usage()
        t = time.perf_counter()
        fn()
        wall = time.perf_counter() - t
        f1, s1, u1 = _usage()
        steps.append({"wall_s": round(wall, 3), "minor_faults": f1 - f0, "sys_s": round(s1 - s0, 2),
                      "user_s": round(u1 - u0, 2)})
    return steps


def _touch(gib: float, huge: bool) -> None:
    m = mmap.mmap(-1, int(gib * 2**30), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if huge:
        m.madvise(mmap.MADV_HUGEPAGE)
    pages = np.frombuffer(m, dtype=np.uint8)
    pages[::4096] = 1
    del pages
    m.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet50")
    p.add_argument("--batch", type=at_least(1), default=16)
    p.add_argument("--res", type=at_least(1), default=224)
    p.add_argument("--steps", type=at_least(1), default=6)
    p.add_argument("--pause", type=at_least(0, float), default=0.0, help="seconds to wait before step --pause-before")
    p.add_argument("--pause-before", type=at_least(0), default=4)
    p.add_argument("--touch-gib", type=at_least(0, float), default=0.0, help="memory alone: map, touch, unmap this many GiB per step")
    p.add_argument("--pages", choices=("huge", "small"), default="huge", help="with --touch-gib")
    a = p.parse_args(argv)
    for name, value, low in (("--steps", a.steps, 1), ("--pause", a.pause, 0), ("--touch-gib", a.touch_gib, 0)):
        if value < low:
            p.error(f"{name}={value}: must be >= {low}")
    if a.touch_gib:
        steps = _timed_steps(a, lambda: _touch(a.touch_gib, a.pages == "huge"))
        print(json.dumps({"touch_gib": a.touch_gib, "pages": a.pages, "pause_s": a.pause, "steps": steps}))
        return 0
    if argv is None:   # as a training run starts (train/host_memory.py)
        from train import host_memory  # noqa: PLC0415

        if (status := host_memory.start_command_line(argv)) is not None:
            return status
    os.environ["ZOO_COMPILE_CACHE"] = "off"   # as profile_step.py --compile-only: always a fresh compile
    import jax  # noqa: PLC0415

    import harness  # noqa: PLC0415

    s = harness.setup(a.model, batch=a.batch, res=a.res, classes=10)
    t = time.perf_counter()
    step = s.train_fn.lower(s.state, s.batch).compile()
    compile_s = time.perf_counter() - t
    state = s.state

    def one_step():
        nonlocal state
        state, metrics = step(state, s.batch)
        jax.block_until_ready(metrics)

    steps = _timed_steps(a, one_step)
    print(json.dumps({"model": a.model, "batch": a.batch, "res": a.res, "compile_s": round(compile_s, 2),
                      "pause_s": a.pause, "pause_before": a.pause_before if a.pause else None,
                      "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""), "ld_preload": os.environ.get("LD_PRELOAD", ""),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, "steps": steps}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
