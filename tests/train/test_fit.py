"""Issue 5: training end to end: fit, evaluate, restore, checkpoints (resume, kill, signals, bad
workdirs), configs, the CLI."""
import importlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train
import zoo
from configs import lenet5_mnist5k
from helpers import ROOT, child_env, run_worker
from train import checkpoint, data

CONFIGS = sorted(p.stem for p in (ROOT / "configs").glob("*.py") if p.stem not in ("__init__", "default"))


def quick(**overrides):
    c = lenet5_mnist5k.get_config()
    c.num_epochs = 4.0
    c.update_from_flattened_dict(overrides)  # dotted names: {"data.name": ...}
    return c


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("lenet5")
    return workdir, train.fit(quick(), workdir)


def test_short_lenet5_training_reaches_95_percent(trained):
    _, r = trained
    assert r.eval["count"] == 1000  # every held-out image, once
    assert r.eval["top1"] >= 0.95
    assert r.best_top1 >= r.eval["top1"]


def test_evaluate_reproduces_the_reported_accuracy_exactly(trained):
    workdir, r = trained
    report = train.evaluate(workdir, checkpoint_step="latest")
    assert report["step"] == r.step
    assert report["top1"] == r.eval["top1"] and report["top5"] == r.eval["top5"] and report["count"] == 1000
    assert report["loss"] == pytest.approx(r.eval["loss"], rel=1e-6)
    assert len(report["per_class_top1"]) == 10
    assert np.asarray(report["confusion"]).sum() == 1000
    import matplotlib.image
    assert matplotlib.image.imread(report["confusion_png"]).ndim == 3


def test_restore_gives_a_model_research_code_can_apply(trained):
    workdir, _ = trained
    model, variables = train.restore(workdir, checkpoint_step="latest")
    pipe = data.load({"name": "mnist5k"}, split="test", train=False, batch_size=500, image_shape=(28, 28, 1))
    correct = 0
    for b in pipe:
        pred = np.asarray(model.apply(variables, jnp.asarray(b["image"]), train=False)).argmax(-1)
        correct += int(((pred == b["label"]) * b["mask"]).sum())
    assert correct / 1000 == train.evaluate(workdir, checkpoint_step="latest", plot=False)["top1"]
    meta = train.restore_meta(workdir)
    assert meta["model"] == "lenet5" and meta["class_names"] == [str(i) for i in range(10)]
    assert meta["preprocessing"]["image_size"] == [28, 28] and "jax" in meta["versions"]
    assert meta["config"]["optimizer"]["name"] == "adam"


def test_rerunning_a_finished_run_changes_nothing(trained):
    workdir, r = trained
    before = train.restore(workdir, checkpoint_step="latest")[1]
    again = train.fit(quick(), workdir)
    assert again.step == r.step and again.eval["top1"] == r.eval["top1"]
    after = train.restore(workdir, checkpoint_step="latest")[1]
    jax.tree.map(np.testing.assert_array_equal, before, after)


def _snapshot(path: Path):
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")}


def test_workdir_of_another_architecture_is_refused_untouched(trained):
    workdir, _ = trained
    before = _snapshot(workdir)
    with pytest.raises(checkpoint.WorkdirMismatchError, match="lenet5.*lenet5_classic"):
        train.fit(quick(model="lenet5_classic"), workdir)
    with pytest.raises(checkpoint.WorkdirMismatchError, match="5 classes"):
        train.fit(quick(**{"data.name": "synthetic", "data.synthetic_num_classes": 5}), workdir)
    assert _snapshot(workdir) == before


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(trained, tmp_path, caplog):
    workdir, _ = trained
    copy = tmp_path / "w"
    shutil.copytree(workdir, copy)
    steps = sorted(int(p.name) for p in (copy / "checkpoints").iterdir() if p.name.isdigit())
    for f in (copy / "checkpoints" / str(steps[-1]) / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # truncated
    with caplog.at_level(logging.WARNING):
        model, variables = train.restore(copy, checkpoint_step="latest")
    assert any("falling back" in r.message or "trying the previous" in r.message for r in caplog.records)
    expected = train.restore(workdir, checkpoint_step=steps[-2])[1]
    jax.tree.map(np.testing.assert_array_equal, expected, variables)


def test_non_finite_state_is_never_saved(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path, async_save=False)
    state = {"params": {"w": np.array([1.0, np.nan], np.float32)}}
    assert ckpt.save(1, state, data_state={}, meta={}) is False
    ckpt.wait()
    assert ckpt.steps() == []


def _train_cmd(workdir, *extra):
    return [sys.executable, "-m", "train", "--config", str(ROOT / "configs/lenet5_mnist5k.py"), "--workdir",
            str(workdir), "--config.num_train_steps=40", "--config.checkpoint.every_steps=10",
            "--config.log_every_steps=5", "--config.schedule.warmup_epochs=0", *extra]


def _run_until(cmd, predicate, sig):
    """Start ``cmd``; on each line it prints, test ``predicate(line)``; when true send ``sig``."""
    proc = subprocess.Popen(cmd, env=child_env(1, PYTHONUNBUFFERED=1), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if predicate(line):
                proc.send_signal(sig)
                break
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    return proc.returncode, "".join(lines) + (out or "")


def _step_of(line):
    return int(line.split()[1].split("/")[0]) if line.startswith("step ") else -1


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    reference = tmp_path / "reference"
    subprocess.run(_train_cmd(reference), env=child_env(1), check=True, capture_output=True, cwd=ROOT, timeout=600)
    killed = tmp_path / "killed"
    committed = killed / "checkpoints" / "20"
    code, out = _run_until(_train_cmd(killed), lambda l: _step_of(l) >= 25 and committed.is_dir(), signal.SIGKILL)
    assert code == -signal.SIGKILL, out  # killed at step >= 25 of a 62-step epoch: mid-epoch
    resumed = subprocess.run(_train_cmd(killed), env=child_env(1), capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    first_step = min(_step_of(l) for l in resumed.stdout.splitlines() if l.startswith("step "))
    assert first_step > 20, "the second run must resume, not restart"
    ref = train.restore(reference, checkpoint_step="latest", use_ema=False)[1]
    res = train.restore(killed, checkpoint_step="latest", use_ema=False)[1]
    jax.tree.map(np.testing.assert_array_equal, ref, res)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_exits_cleanly(tmp_path, sig):
    code, out = _run_until(_train_cmd(tmp_path), lambda l: _step_of(l) >= 15, sig)
    assert code == 0, out
    assert "checkpoint saved" in out and "Traceback" not in out
    saved = max(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert 15 <= saved < 40


def test_restore_on_another_device_count(tmp_path):
    r = run_worker("fit_devices", tmp_path, "shard_map", devices=8)
    assert r["devices"] == 8
    report = train.evaluate(tmp_path, checkpoint_step="latest", plot=False)  # here: 1 device
    assert report["top1"] == r["top1"]
    assert report["loss"] == pytest.approx(r["loss"], rel=1e-5)


def test_resnet20_config_runs_two_steps_on_mock_cifar10(tmp_path):
    import tensorflow_datasets as tfds
    c = importlib.import_module("configs.resnet20_cifar10").get_config()
    c.num_train_steps = 2
    c.batch_size = 16
    c.eval_batch_size = 32
    with tfds.testing.mock_data(num_examples=64):
        r = train.fit(c, tmp_path)
    assert r.step == 2 and r.eval["count"] == 64 and np.isfinite(r.train["loss"])


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_builds_and_its_model_initialises(name):
    c = importlib.import_module(f"configs.{name}").get_config()
    assert c.model in zoo.list_models()
    shape = data.model_image_shape(c)
    kwargs = {**c.model_kwargs.to_dict(), "num_classes": 10}
    v = jax.eval_shape(lambda: zoo.create(c.model, **kwargs).init(jax.random.key(0), jnp.zeros((1, *shape))))
    assert v["params"]


def test_cli_unknown_config_field_is_named(tmp_path):
    p = subprocess.run(_train_cmd(tmp_path, "--config.optimizer.learnin_rate=0.1"), env=child_env(1),
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode != 0 and "learnin_rate" in p.stderr
    assert not (tmp_path / "checkpoints").exists()
