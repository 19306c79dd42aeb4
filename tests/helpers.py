"""Test helpers: run a worker script in a fresh interpreter with N simulated CPU devices."""
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKERS = Path(__file__).resolve().parent / "workers"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


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


def random_variables(model, input_shape, seed: int = 0) -> dict:
    """Variables of ``model`` filled with He-scaled random numbers (no compiled init: forward-pass
    tests of large models only need well-scaled values). BatchNorm: scale 1, bias 0, mean 0, var 1."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *input_shape)), train=False))
    rng = np.random.default_rng(seed)

    def fill(path, s):
        name = str(getattr(path[-1], "key", path[-1]))
        if name in ("scale", "var"):
            return np.ones(s.shape, s.dtype)
        if name in ("bias", "mean") or len(s.shape) < 2:
            return np.zeros(s.shape, s.dtype)
        fan_in = int(np.prod(s.shape[:-1]))
        return (rng.standard_normal(s.shape) * np.sqrt(1.0 / fan_in)).astype(s.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


@functools.lru_cache(maxsize=None)
def traced(name: str):
    """(layer rows, abstract variables) of a registered variant at its default input: one
    jax.eval_shape per model per test session (shared by test_zoo and test_readme)."""
    import zoo
    from zoo.summary import trace

    return trace(zoo.create(name), zoo.model_info(name).input_shape)


def quick(**overrides):
    """The quickstart config (LeNet-5 on the offline mnist5k digits) shortened to 4 epochs, with
    dotted overrides: ``quick(**{"data.name": "synthetic", "num_train_steps": 5})``."""
    from configs import lenet5_mnist5k

    c = lenet5_mnist5k.get_config()
    c.num_epochs = 4.0
    c.update_from_flattened_dict(overrides)
    return c


def snapshot(path: Path) -> dict:
    """``{relative path: (size, mtime_ns)}`` of everything under ``path``: compare two to prove nothing changed."""
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")}
