"""``bench.py``'s child processes: each worker runs to completion under a timeout in its own process,
with the machine's interference during that run (other processes' CPU time, hypervisor steal) taken
from ``/proc/stat`` around it; a run that others disturbed is repeated on a quiet machine.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench_report import disturbance

ROOT = Path(__file__).resolve().parent.parent


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cpu_times() -> tuple[float, float] | None:
    """(busy, steal) CPU seconds of the whole machine so far, all cores (/proc/stat): busy = user + nice +
    system + irq + softirq (no idle, iowait or steal); steal = time the hypervisor gave to other guests."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        hz = os.sysconf("SC_CLK_TCK")
        user, nice, system, idle, iowait, irq, softirq, steal = v
        return (user + nice + system + irq + softirq) / hz, steal / hz
    except (OSError, ValueError, IndexError):
        return None


LAST_RUN: dict = {}


def run_child(cmd: list[str], env: dict, timeout: float, log: Path) -> tuple[int, float, float]:
    """Run ``cmd`` to completion; returns (exit code, peak RSS MiB of that child, wall seconds).
    Interference figures of the run, in CPUs (CPU-seconds per wall second), in ``LAST_RUN``:
    ``other_cpu``, work of OTHER processes of this machine (busy time minus the child's own CPU
    time), and ``steal``, CPU time the hypervisor gave to other virtual machines (on a shared host
    this, not the load average, shows the other jobs; the load average is ~2 while the benchmark
    itself uses both cores)."""
    c0 = _cpu_times()
    t = time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=str(ROOT))
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                p.kill()
                _, status, usage = os.wait4(p.pid, 0)
                p.returncode = -9
                break
            time.sleep(0.05)
    wall = time.perf_counter() - t
    c1 = _cpu_times()
    LAST_RUN.clear()
    LAST_RUN["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    if c0 and c1 and wall > 0:
        LAST_RUN["other_cpu"] = round(max(0.0, c1[0] - c0[0] - LAST_RUN["cpu_s"]) / wall, 2)
        LAST_RUN["steal"] = round((c1[1] - c0[1]) / wall, 2)
    return p.returncode, usage.ru_maxrss / 1024, wall


def tail(log: Path, n: int = 15) -> str:
    try:
        return "\n".join(log.read_text().splitlines()[-n:])
    except OSError:
        return ""


def probe(seconds: float = 3.0) -> float | None:
    """CPUs taken by others while this machine is kept busy: two spinning processes for ``seconds``,
    then (other processes' busy time + hypervisor steal) / wall. An idle guest accrues no steal, so
    the host's other jobs only show while something runs."""
    c0, t0 = _cpu_times(), time.perf_counter()
    spin = f"import time\nt = time.time() + {seconds}\nwhile time.time() < t: pass"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(os.cpu_count() or 1)]
    own = 0.0
    for p in procs:
        _, _, usage = os.wait4(p.pid, 0)
        own += usage.ru_utime + usage.ru_stime
    c1, wall = _cpu_times(), time.perf_counter() - t0
    if not c0 or not c1:
        return None
    return round((max(0.0, c1[0] - c0[0] - own) + c1[1] - c0[1]) / wall, 2)


def quiet_wait(a) -> None:
    """Wait (at most ``--wait`` s) until :func:`probe` finds others taking <= ``--max-other-cpu`` CPUs."""
    deadline = time.monotonic() + a.wait
    while time.monotonic() < deadline:
        d = probe()
        if d is None or d <= a.max_other_cpu:
            return
        time.sleep(20)


def retrying(a, fn, label: str):
    """``fn()`` -> row; while others took more than ``--max-other-cpu`` CPUs during the run
    (:func:`disturbance`), wait for a quiet machine (``--wait`` s at most) and run again,
    ``--retries`` times at most; keeps the least disturbed row (every attempt's figures are kept
    under ``attempts``)."""
    rows = [fn()]
    while disturbance(rows[-1]) is not None and disturbance(rows[-1]) > a.max_other_cpu and len(rows) <= a.retries:
        print(f"  ({label}: others took {disturbance(rows[-1])} CPUs during the run; waiting for a quiet "
              f"machine and running it again)", flush=True)
        quiet_wait(a)
        rows.append(fn())
    ok = [r for r in rows if disturbance(r) is not None]
    best = min(ok, key=disturbance) if ok else rows[-1]
    if best and len(rows) > 1:
        best["attempts"] = [{k: r.get(k) for k in ("train_img_s", "eval_img_s", "other_cpu", "steal", "loadavg_after")}
                            for r in rows if r]
    return best
