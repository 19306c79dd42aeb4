"""``train.host_memory``: a process started with it faults a program's large temporary buffer in
per 2 MiB huge page instead of per 4 KiB page (the kernel's page-fault counter, ``getrusage``, is the
reference); the command lines restart themselves once with it; the switch and its errors."""
import json
import subprocess
import sys

import pytest

from helpers import ROOT, child_env
from train import host_memory

needs_thp = pytest.mark.skipif(not host_memory.applies({}), reason="Linux with glibc and transparent huge pages only")

# a program with a 64 MB temporary buffer: the (4096, 4096) product between two matmuls
CHILD = """
import json, os, resource
import jax, jax.numpy as jnp
f = jax.jit(lambda a, b: jnp.sum(jnp.tanh(a @ b) @ b.T[:, :8]))
a, b = jnp.ones((4096, 256)) / 256, jnp.ones((256, 4096))
faults = []
for _ in range(7):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(a, b).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"tunables": os.environ.get("GLIBC_TUNABLES"), "faults": faults}))
"""


def _child(code: str, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@needs_thp
@pytest.mark.integration
def test_large_blocks_fault_in_per_huge_page():
    pages = 4096 * 4096 * 4 // 4096                        # the temporary buffer: 16,384 pages of 4 KiB
    base = child_env(1, ZOO_HOST_MEMORY="system")
    base.pop("GLIBC_TUNABLES", None)
    runs = {}
    for name, env in (("system", base), ("hugepages", host_memory.environment({**base, host_memory.ENV: "hugepages"}))):
        runs[name] = json.loads(_child(CHILD, env).stdout.strip().splitlines()[-1])
    assert runs["system"]["tunables"] is None and runs["hugepages"]["tunables"] == "glibc.malloc.hugetlb=1"
    median = lambda r: sorted(r["faults"][2:])[2]          # noqa: E731  (of the last five calls)
    assert median(runs["system"]) >= pages // 2             # glibc maps it afresh on every call: 4 KiB faults
    assert median(runs["hugepages"]) < pages // 8           # 2 MiB pages: a fault per 512 of those


@needs_thp
@pytest.mark.integration
def test_a_command_line_restarts_once_with_huge_pages_keeping_its_process():
    code = ("import os, sys; print('start', os.getpid(), flush=True); from train import host_memory; "
            "host_memory.restart_with_huge_pages(); print('running', os.getpid(), os.environ['GLIBC_TUNABLES'])")
    env = child_env(1, GLIBC_TUNABLES="glibc.malloc.arena_max=2")
    env.pop(host_memory.ENV, None)
    lines = _child(code, env).stdout.split()
    assert lines[0] == "start" and lines[2] == "start" and lines[4] == "running"   # started twice, ran once
    assert lines[1] == lines[3] == lines[5]                                          # the same process
    assert lines[6] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"            # the user's tunables kept


def test_environment_keeps_a_users_choice_and_the_system_setting():
    if not host_memory.applies({}):
        assert host_memory.environment({"A": "1"}) == {"A": "1"}
        return
    assert host_memory.environment({})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    kept = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}
    assert host_memory.environment(kept) == kept
    off = {host_memory.ENV: "system"}
    assert host_memory.environment(off) == off and not host_memory.in_effect(off)


def test_the_setting_and_its_errors():
    assert host_memory.setting({}) == "hugepages"
    assert host_memory.setting({host_memory.ENV: " System "}) == "system"
    with pytest.raises(ValueError, match=r"ZOO_HOST_MEMORY='fast': expected one of hugepages, system"):
        host_memory.environment({host_memory.ENV: "fast"})


@pytest.mark.integration
def test_the_train_command_names_a_bad_setting_in_one_line(tmp_path):
    cmd = [sys.executable, "-m", "train", "--config", str(ROOT / "configs/lenet5_mnist5k.py"), "--workdir",
           str(tmp_path / "run"), "--config.num_train_steps=1"]
    proc = subprocess.run(cmd, env=child_env(1, ZOO_HOST_MEMORY="fast"), capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 2 and not (tmp_path / "run").exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "ZOO_HOST_MEMORY='fast'" in lines[0] and "hugepages, system" in lines[0], proc.stderr
