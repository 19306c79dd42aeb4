"""benchmarks/step_memory.py: its per-step counts are the kernel's. Touching N pages of 4 KiB that
were just mapped faults each of them once (the page count is the reference), and a real train step
is compiled before the first timed call."""
import json
import subprocess
import sys

import pytest

from helpers import ROOT, child_env


def _run(*args: str) -> dict:
    env = child_env(1, ZOO_HOST_MEMORY="system")       # glibc as it is: no restart, no tunable
    env.pop("GLIBC_TUNABLES", None)
    proc = subprocess.run([sys.executable, "benchmarks/step_memory.py", *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_touching_small_pages_faults_each_page_once_per_step():
    out = _run("--touch-gib", "0.0625", "--pages", "small", "--steps", "3")
    pages = (2**30 // 16) // 4096                                        # 16,384 pages of 4 KiB
    assert all(pages <= s["minor_faults"] < pages + 256 for s in out["steps"]), out   # once each, nothing else


@pytest.mark.integration
def test_a_models_steps_are_timed_after_compiling():
    out = _run("--model", "lenet5", "--batch", "8", "--res", "28", "--steps", "2")
    assert out["model"] == "lenet5" and out["compile_s"] > 0 and len(out["steps"]) == 2
    assert out["glibc_tunables"] == "" and all(s["wall_s"] > 0 for s in out["steps"])
