"""train.checkpoint: which checkpoint is read ('best', 'latest', a step), the one fallback past
unreadable checkpoints, damaged checkpoints set aside (never deleted), content checksums verified on
every read (a flipped bit is caught), retention, non-finite states refused, a save that cannot be
written reported as one error, restore on another device count."""
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import train
from helpers import ROOT, child_env, run_worker
from train import checkpoint, checkpoint_content


def _corrupt(workdir, step):
    """Truncate every file of checkpoint ``step``'s state to half its size."""
    for f in (workdir / "checkpoints" / str(step) / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _steps(workdir):
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def _corrupt_dir(workdir):
    return workdir / "checkpoints" / checkpoint.CORRUPT


@pytest.fixture
def corruptible(trained_lenet, tmp_path):
    """A copy of the trained workdir, to damage."""
    copy = tmp_path / "w"
    shutil.copytree(trained_lenet[0], copy)
    return copy


def _files(path):
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def _flip_one_bit(workdir, step):
    """Rewrite checkpoint ``step``'s state through orbax itself with one bit of one parameter flipped:
    a checkpoint that reads without any error, holding other values than were saved."""
    stored = workdir / "checkpoints" / str(step) / "state"
    state = ocp.StandardCheckpointer().restore(stored)
    kernel = np.array(state["params"]["fc1"]["kernel"])
    kernel.view(np.uint32).reshape(-1)[7] ^= 1 << 3
    state["params"]["fc1"]["kernel"] = kernel
    writer = ocp.StandardCheckpointer()
    writer.save(workdir / "flipped", state)
    writer.wait_until_finished()
    writer.close()
    shutil.rmtree(stored)
    shutil.move(workdir / "flipped", stored)


def test_corrupt_latest_checkpoint_falls_back_and_is_set_aside(trained_lenet, corruptible, caplog):
    workdir, _ = trained_lenet
    steps = _steps(corruptible)
    _corrupt(corruptible, steps[-1])
    damaged = _files(corruptible / "checkpoints" / str(steps[-1]))
    with caplog.at_level(logging.WARNING):
        model, variables = train.restore(corruptible, checkpoint_step="latest")
    assert any("trying the next one" in r.message and "corrupt" in r.message for r in caplog.records)
    expected = train.restore(workdir, checkpoint_step=steps[-2])[1]
    jax.tree.map(np.testing.assert_array_equal, expected, variables)
    # moved, not deleted: byte for byte under checkpoints/corrupt/<step>; the next read does not warn again
    assert _steps(corruptible) == steps[:-1]
    assert _files(_corrupt_dir(corruptible) / str(steps[-1])) == damaged
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert train.load(corruptible, "latest").step == steps[-2]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_error_of_the_machine_is_raised_and_moves_nothing(corruptible):
    """A MemoryError (or EMFILE, a permission) while reading took a sound checkpoint out of
    checkpoints/ into corrupt/, during a call research code uses as a read (train.restore)."""
    before = _files(corruptible)

    def out_of_memory(tree):
        raise MemoryError("simulated: no memory while reading")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checkpoint_content, "checksums", out_of_memory)
        with pytest.raises(MemoryError, match="simulated"):
            train.restore(corruptible, checkpoint_step="latest")
    assert _files(corruptible) == before and not _corrupt_dir(corruptible).exists()


def test_with_every_checkpoint_damaged_the_errors_name_where_they_were_set_aside(corruptible, caplog):
    steps = _steps(corruptible)
    for s in steps:
        _corrupt(corruptible, s)
    with caplog.at_level(logging.WARNING), pytest.raises(checkpoint.NoCheckpointError) as e:
        train.restore(corruptible, checkpoint_step="latest")
    aside = ", ".join(f"corrupt/{s}" for s in sorted(map(str, steps)))
    assert str(e.value).endswith(f"(set aside as damaged: {aside}; move one back to use it)")
    assert "no other checkpoint to try" in caplog.records[-1].message   # not "the previous one": none is left
    with pytest.raises(checkpoint.NoCheckpointError, match=r"^no checkpoints in .*\(set aside as damaged: corrupt/"):
        train.restore_meta(corruptible)


def test_a_reader_beside_a_live_run_passes_over_steps_deleted_while_it_lists_or_reads(corruptible, caplog,
                                                                                     monkeypatch):
    """train.load in a loop beside a run that checkpoints often (retention deleting steps) failed now and
    then: orbax's listing stats each step folder (a raw FileNotFoundError when one was just deleted),
    and a read whose candidates were all deleted meanwhile said "no readable checkpoint" while newer
    ones existed. Both list again; a step deleted while read is no damage, so no warning."""
    steps = _steps(corruptible)
    directory = corruptible / "checkpoints"
    real_manager, made = ocp.CheckpointManager, []

    def listing_while_a_step_is_deleted(*args, **kwargs):
        made.append(1)
        if len(made) == 1:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(directory / "340"))
        return real_manager(*args, **kwargs)

    monkeypatch.setattr(ocp, "CheckpointManager", listing_while_a_step_is_deleted)
    assert train.load(corruptible, "latest").step == steps[-1] and len(made) == 2
    monkeypatch.setattr(ocp, "CheckpointManager", real_manager)

    real_read = checkpoint.Checkpointer.read_step

    def read_while_the_run_saves_newer_ones(self, step, **kw):   # every listed step replaced by a newer one
        if (directory / str(step)).exists() and step < 10_000:
            for s in steps:
                os.rename(directory / str(s), directory / str(s + 10_000))
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(directory / str(step)))
        return real_read(self, step, **kw)

    monkeypatch.setattr(checkpoint.Checkpointer, "read_step", read_while_the_run_saves_newer_ones)
    with caplog.at_level(logging.WARNING):
        assert train.load(corruptible, "latest").step == steps[-1] + 10_000
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("train")]
    assert not _corrupt_dir(corruptible).exists()
    with pytest.raises(FileNotFoundError):   # a path outside the checkpoints: not a listing race
        monkeypatch.setattr(ocp, "CheckpointManager", lambda *a, **k: (_ for _ in ()).throw(
            FileNotFoundError(errno.ENOENT, "No such file or directory", "/elsewhere/x")))
        checkpoint.Checkpointer(corruptible, read_only=True)


def test_a_step_half_deleted_by_a_live_runs_retention_is_not_reported(corruptible, caplog, monkeypatch):
    """Beside a live run, a step whose folder the run was removing failed to read ('Item "meta" was not
    found') and was reported as unrestorable every few seconds: the warning waits until the next
    candidate was read, and a step gone by then is not reported."""
    from train.lock import WorkdirLock

    steps = _steps(corruptible)
    directory = corruptible / "checkpoints"
    real_read = checkpoint.Checkpointer.read_step

    def read(self, step, **kw):
        if step == steps[-1]:
            raise KeyError('Item "meta" was not found')   # its folder is still there: half removed
        if (directory / str(steps[-1])).exists():
            shutil.rmtree(directory / str(steps[-1]))      # the run's retention finishes meanwhile
        return real_read(self, step, **kw)

    monkeypatch.setattr(checkpoint.Checkpointer, "read_step", read)
    # the live run holds the workdir's lock (its own open file, as another process has): nothing is set aside
    trainer = os.open(corruptible / WorkdirLock.NAME, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(trainer, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with caplog.at_level(logging.WARNING):
            assert train.load(corruptible, "latest").step == steps[-2]
    finally:
        os.close(trainer)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING] and not _corrupt_dir(corruptible).exists()


def test_a_flipped_bit_is_caught_and_set_aside(trained_lenet, corruptible, caplog):
    workdir, _ = trained_lenet
    steps = _steps(corruptible)
    _flip_one_bit(corruptible, steps[-1])
    with caplog.at_level(logging.WARNING):
        loaded = train.load(corruptible, "latest")
    assert loaded.step == steps[-2]
    assert any("checksum mismatch in params/fc1/kernel" in r.message for r in caplog.records)
    jax.tree.map(np.testing.assert_array_equal, train.load(workdir, steps[-2]).variables, loaded.variables)
    assert (_corrupt_dir(corruptible) / str(steps[-1]) / "state").is_dir()
    with pytest.raises(ValueError, match=r"not in .*available"):  # a set-aside step is no longer offered
        train.load(corruptible, steps[-1])


def test_flipped_bytes_in_a_stored_array_make_evaluate_fall_back(trained_lenet, corruptible, caplog):
    """64 bytes of the largest data file of the latest checkpoint overwritten: whichever way the
    damage shows (a read error, a checksum, non-finite weights), evaluate uses the previous one."""
    _, r = trained_lenet
    steps = _steps(corruptible)
    data_files = [f for f in (corruptible / "checkpoints" / str(steps[-1]) / "state").rglob("*")
                  if f.is_file() and f.parent.name == "d"]
    biggest = max(data_files, key=lambda f: f.stat().st_size)
    raw = bytearray(biggest.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = b"\xff" * 64
    biggest.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING):
        report = train.evaluate(corruptible, checkpoint_step="latest", plot=False)
    assert report["step"] == steps[-2] and np.isfinite(report["loss"])
    assert any("trying the next one" in r.message for r in caplog.records)


def test_verify_checksums_and_finite_values():
    state = {"params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, "step": np.int32(3)}
    meta = {"checksums": {"crc32": checkpoint.checksums(state)}}
    checkpoint.verify(state, meta)
    checkpoint.verify(state, {})  # written before checksums existed: nothing to compare
    flipped = {"params": {"w": state["params"]["w"].copy()}, "step": np.int32(3)}
    flipped["params"]["w"].view(np.uint32)[0, 1] ^= 1
    with pytest.raises(checkpoint.CorruptCheckpointError, match="checksum mismatch in params/w"):
        checkpoint.verify(flipped, meta)
    with pytest.raises(checkpoint.CorruptCheckpointError, match="non-finite"):
        checkpoint.verify({"params": {"w": np.array([np.nan], np.float32)}}, {})


def test_a_state_from_before_the_statistics_ema_restores_with_it_started_from_the_statistics(caplog):
    """Checkpoints of runs with an EMA written before 2026-12-02 hold ``ema_params`` only: they restore
    into today's state with the statistics' EMA equal to the stored statistics (and evaluate as before,
    tests/train/test_step.py)."""
    import optax

    import zoo
    from train import step

    model = zoo.resnet.CifarResNet(depth=8)
    template = step.abstract_state(model, optax.sgd(0.1), input_shape=(8, 8, 3), ema=True)
    filled = jax.tree.map(lambda a: np.random.default_rng(0).random(a.shape).astype(a.dtype), template)
    raw = {"step": filled.step, "params": filled.params, "batch_stats": filled.batch_stats,
           "opt_state": filled.opt_state, "rng": filled.rng, "ema_params": filled.ema_params}
    with caplog.at_level(logging.INFO, logger="train"):
        state = checkpoint.into(template, raw, where="checkpoint 3")
    jax.tree.map(np.testing.assert_array_equal, state.ema_batch_stats, filled.batch_stats)
    jax.tree.map(np.testing.assert_array_equal, state.ema_params, filled.ema_params)
    assert "without the BatchNorm statistics' EMA" in caplog.text
    with pytest.raises(checkpoint.WorkdirMismatchError, match="does not fit"):  # no EMA at all: still refused
        checkpoint.into(template, {k: v for k, v in raw.items() if k != "ema_params"}, where="checkpoint 3")


def test_no_readable_checkpoint_and_an_unreadable_chosen_step(corruptible):
    steps = _steps(corruptible)
    for s in steps:
        _corrupt(corruptible, s)
    with pytest.raises(Exception) as e:  # a step asked for by number: its own error, no fallback, left in place
        train.restore(corruptible, checkpoint_step=steps[0])
    assert not isinstance(e.value, checkpoint.NoCheckpointError) and _steps(corruptible) == steps
    tried = re.escape(str(list(reversed(steps))))
    with pytest.raises(checkpoint.NoCheckpointError, match=rf"no readable checkpoint.*tried {tried}"):
        train.restore(corruptible, checkpoint_step="latest")
    assert _steps(corruptible) == [] and sorted(int(p.name) for p in _corrupt_dir(corruptible).iterdir()) == steps


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
        with pytest.raises(ValueError, match=r"^checkpoint='bestt': allowed values are 'best', 'latest' or a step number"):
            ckpt.candidates("bestt")
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


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC])
def test_a_save_that_cannot_be_written_is_one_error_and_leaves_the_committed_ones(tmp_path, monkeypatch, code):
    """The write fails where orbax makes the checkpoint's temporary folder (a read-only folder, a
    full disk): save raises at once, naming the folder and the cause; every thread it started ends."""
    ckpt = checkpoint.Checkpointer(tmp_path)
    state = {"params": {"w": np.ones((4, 4), np.float32)}}
    assert ckpt.save(1, state, data_state={}, meta={})
    ckpt.wait()
    committed = _files(tmp_path / "checkpoints" / "1")
    makedirs = os.makedirs

    def failing(path, *args, **kwargs):
        if "orbax-checkpoint-tmp" in str(path):
            raise OSError(code, os.strerror(code), str(path))
        return makedirs(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", failing)
    with pytest.raises(checkpoint.CheckpointWriteError) as e:
        ckpt.save(2, state, data_state={}, meta={})
        ckpt.wait()
    ckpt.close()
    message = str(e.value)
    assert message.startswith(f"cannot write checkpoint 2 in {tmp_path / 'checkpoints'}: {os.strerror(code)}")
    assert "kept as they were: 1" in message and len(message.splitlines()) == 1
    assert _steps(tmp_path) == [1] and _files(tmp_path / "checkpoints" / "1") == committed
    # orbax's loops hand file operations to asyncio's executor threads ("asyncio_N"); closing a loop
    # lets them end without waiting for them, so one may still be ending here (CI saw it once)
    left = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    for t in left:
        t.join(timeout=60)
    assert not [t for t in left if t.is_alive()]


@pytest.mark.integration
def test_reading_a_truncated_checkpoint_prints_one_warning_and_no_traceback(corruptible):
    """After a failed read, tensorstore's pending callbacks find orbax's event loop closed; each used to
    print a 'RuntimeError: Event loop is closed' traceback before the fallback."""
    steps = _steps(corruptible)
    for f in (corruptible / "checkpoints" / str(steps[-1]) / "state").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    code = f"import train; print(train.load({str(corruptible)!r}, 'latest').step)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=child_env(1),
                       timeout=300)
    assert p.returncode == 0 and p.stdout.strip() == str(steps[-2]), p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and f"checkpoint {steps[-1]} in " in lines[0] and "trying the next one" in lines[0], p.stderr


def test_a_damaged_checkpoint_named_by_step_is_one_error_and_best_warns_of_an_unreadable_meta(corruptible, caplog):
    """Once orbax's KeyError traceback for an explicit step; and 'best' passed over a checkpoint whose
    meta was gone (the best and newest one) without a word, and used an older one."""
    steps = _steps(corruptible)
    shutil.rmtree(corruptible / "checkpoints" / str(steps[-1]) / "state")
    with pytest.raises(checkpoint.CorruptCheckpointError,
                       match=rf"^checkpoint {steps[-1]} in .* cannot be read \(KeyError: .*\); name another step, "
                             r"or 'best' / 'latest' \(which pass over damaged checkpoints\)$"):
        train.load(corruptible, steps[-1])
    assert (corruptible / "checkpoints" / str(steps[-1])).is_dir()   # named by the user: not set aside
    shutil.rmtree(corruptible / "checkpoints" / str(steps[-1]) / "meta")
    with caplog.at_level(logging.WARNING):
        loaded = train.load(corruptible, "best")
    assert loaded.step in steps[:-1]
    assert any(f"checkpoint {steps[-1]} in" in r.message and "cannot be restored" in r.message for r in caplog.records)
    assert (_corrupt_dir(corruptible) / str(steps[-1])).is_dir()


def test_the_best_checkpoint_outlives_a_resume(tmp_path):
    """Orbax's BestN ranked only this process's saves: a second Checkpointer (a resumed run) found no
    metrics on disk and deleted the best, which the run's summary and 'best' still named."""
    state = {"params": {"w": np.ones(3, np.float32)}}

    def save(ckpt, step, top1=None):
        metrics = {"val_top1": top1} if top1 is not None else None
        ckpt.save(step, state, data_state={}, meta={"metrics": metrics or {}}, metrics=metrics)
        ckpt.wait()

    first = checkpoint.Checkpointer(tmp_path, keep=1, async_save=False)
    for step, top1 in [(1, 0.5), (2, 0.9), (3, 0.9), (4, 0.7)]:
        save(first, step, top1)
    first.close()
    assert _steps(tmp_path) == [2, 4]           # the best (the first of equals) and the latest
    resumed = checkpoint.Checkpointer(tmp_path, keep=1, async_save=False)
    save(resumed, 5)
    save(resumed, 6, 0.8)
    assert _steps(tmp_path) == [2, 6] and resumed.best_step() == 2
    save(resumed, 7, 0.95)
    assert _steps(tmp_path) == [7] and resumed.best_step() == 7
    resumed.close()
