"""Raw record (Round 24): `perf record` around the first and the third call of the compiled train step.

    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 PYTHONPATH=. python benchmarks/results/r24_perf_first.py densenet121 64 32
    perf report -i densenet121_32_first.data --no-children --sort sym -g none --stdio -F overhead,sample,sym

Writes ``<model>_<res>_{first,third}.data`` into the current directory and prints each call's seconds.
perf is attached (1 s to start) before the call and stopped after it; the second call runs without it.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["ZOO_COMPILE_CACHE"] = "off"
import jax  # noqa: E402

import harness  # noqa: E402

model, batch, res = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = harness.setup(model, batch=batch, res=res, classes=10)
step = s.train_fn.lower(s.state, s.batch).compile()
state = s.state


def run(tag: str, record: bool) -> None:
    global state
    perf = None
    if record:
        perf = subprocess.Popen(["perf", "record", "-F", "2000", "-g", "-p", str(os.getpid()), "-o", f"{model}_{res}_{tag}.data"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
    t = time.perf_counter()
    state, metrics = step(state, s.batch)
    jax.block_until_ready(metrics)
    dt = time.perf_counter() - t
    if perf:
        perf.send_signal(signal.SIGINT)
        perf.wait()
    print(tag, round(dt, 3), flush=True)


run("first", True)
run("second", False)
run("third", True)
