"""train.checkpoint: which checkpoint is read ('best', 'latest', a step), the one fallback past
unreadable checkpoints, retention, non-finite states refused, restore on another device count."""
import json
import logging
import re
import shutil

import jax
import numpy as np
import pytest

import train
from helpers import run_worker
from train import checkpoint


def _corrupt(workdir, step):
    """Truncate every file of checkpoint ``step``'s state to half its size."""
    for f in (workdir / "checkpoints" / str(step) / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _steps(workdir):
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


@pytest.fixture
def corruptible(trained_lenet, tmp_path):
    """A copy of the trained workdir, to damage."""
    copy = tmp_path / "w"
    shutil.copytree(trained_lenet[0], copy)
    return copy


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(trained_lenet, corruptible, caplog):
    workdir, _ = trained_lenet
    steps = _steps(corruptible)
    _corrupt(corruptible, steps[-1])
    with caplog.at_level(logging.WARNING):
        model, variables = train.restore(corruptible, checkpoint_step="latest")
    assert any("falling back" in r.message or "trying the previous" in r.message for r in caplog.records)
    expected = train.restore(workdir, checkpoint_step=steps[-2])[1]
    jax.tree.map(np.testing.assert_array_equal, expected, variables)


def test_no_readable_checkpoint_and_an_unreadable_chosen_step(corruptible):
    steps = _steps(corruptible)
    for s in steps:
        _corrupt(corruptible, s)
    tried = re.escape(str(list(reversed(steps))))
    with pytest.raises(checkpoint.NoCheckpointError, match=rf"no readable checkpoint.*tried {tried}"):
        train.restore(corruptible, checkpoint_step="latest")
    with pytest.raises(Exception) as e:  # a step asked for by number: its own error, no fallback
        train.restore(corruptible, checkpoint_step=steps[0])
    assert not isinstance(e.value, checkpoint.NoCheckpointError)


def test_best_latest_and_numbered_checkpoints(trained_lenet):
    """Retention keeps the last 3 plus the best by validation top-1 (read here from metrics.jsonl)."""
    workdir, r = trained_lenet
    evals = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in evals if m["split"] == "eval"]
    best = max(evals, key=lambda m: m["top1"])["step"]  # the first of equals
    steps = _steps(workdir)
    # saved at every evaluation (62, 124, 186, 248) and every 200 steps
    assert set(steps) == {186, 200, 248} | {best}
    ckpt = checkpoint.Checkpointer(workdir, read_only=True)
    try:
        assert ckpt.best_step() == best == r.best_step
        assert ckpt.candidates("latest") == list(reversed(steps))
        assert ckpt.candidates("best") == [best] + [s for s in reversed(steps) if s != best]
        assert ckpt.candidates(str(steps[0])) == [steps[0]]
        with pytest.raises(ValueError, match=rf"checkpoint='7': not in .*available: {re.escape(str(steps))}"):
            ckpt.candidates("7")
        raw, meta, s = ckpt.read("latest")
        assert s == steps[-1] == 248 and meta["step"] == 248 and meta["metrics"]["val_top1"] == r.eval["top1"]
        assert set(raw) >= {"step", "params", "opt_state", "rng"} and int(raw["step"]) == 248
    finally:
        ckpt.close()


def test_non_finite_state_is_never_saved(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path, async_save=False)
    state = {"params": {"w": np.array([1.0, np.nan], np.float32)}}
    assert ckpt.save(1, state, data_state={}, meta={}) is False
    ckpt.wait()
    assert ckpt.steps() == []


@pytest.mark.integration
def test_restore_on_another_device_count(tmp_path):
    r = run_worker("fit_devices", tmp_path, "shard_map", devices=8)
    assert r["devices"] == 8
    report = train.evaluate(tmp_path, checkpoint_step="latest", plot=False)  # here: 1 device
    assert report["top1"] == r["top1"]
    assert report["loss"] == pytest.approx(r["loss"], rel=1e-5)
