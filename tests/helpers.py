"""Test helpers: run a worker script in a fresh interpreter with N simulated CPU devices."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKERS = Path(__file__).resolve().parent / "workers"


def child_env(devices: int = 1, **extra) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_worker(name: str, *args, devices: int = 1, timeout: int = 600, env: dict | None = None) -> dict:
    """Run tests/workers/<name>.py with ``devices`` simulated devices; it prints one JSON line last."""
    cmd = [sys.executable, str(WORKERS / f"{name}.py"), *map(str, args)]
    proc = subprocess.run(cmd, env={**child_env(devices), **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
