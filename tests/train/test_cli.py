"""The command lines: ``python -m train`` (kill and resume bit-identical, SIGTERM/SIGINT save and exit,
exit 130 / 143, data workers end with a killed process, Ctrl-C during start-up and a second Ctrl-C end cleanly, a second process on a workdir is refused, a
read-only or full checkpoint folder is one error line within seconds with the committed checkpoints
untouched, unknown config fields named) and ``python -m train.evaluate``."""
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import train
from helpers import ROOT, WORKERS, child_env
from train import evaluation


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


@pytest.mark.integration
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

    def rows(workdir, name="metrics.jsonl"):
        return [(r["step"], r["split"], r["loss"]) for r in map(json.loads, (workdir / name).read_text().splitlines())]

    assert rows(killed) == rows(reference)   # one timeline: the rows logged after checkpoint 20 were set aside
    assert rows(killed, "metrics.abandoned.jsonl") and all(s > 20 for s, _, _ in rows(killed, "metrics.abandoned.jsonl"))


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_exits_cleanly(tmp_path, sig):
    """The exit status is the shell's for the signal (130, 143), as the search's: it was 0, so a script or
    a scheduler could not tell a stopped run from a finished one."""
    code, out = _run_until(_train_cmd(tmp_path), lambda l: _step_of(l) >= 15, sig)
    assert code == 128 + sig, out
    assert "checkpoint saved" in out and "Traceback" not in out
    saved = max(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert 15 <= saved < 40
    assert out.splitlines()[-1] == f"interrupted by {sig.name} at step {saved}; checkpoint saved in {tmp_path}"


@pytest.mark.integration
def test_a_run_resumed_from_a_checkpoint_between_log_steps_gets_the_same_metrics_rows(tmp_path):
    """A checkpoint at step 14 with rows every 5 steps: the resumed run's row at step 15 once averaged
    step 15 alone (steps 11-14 were lost with the killed process; SIGTERM between log steps wrote a short
    row instead: loss 0.319 against 0.381). The steps since the last row now go into each checkpoint and
    the resumed run reports them, so the rows equal an uninterrupted run's."""
    every7 = "--config.checkpoint.every_steps=7"
    reference = tmp_path / "reference"
    subprocess.run(_train_cmd(reference, every7), env=child_env(1), check=True, capture_output=True, cwd=ROOT,
                   timeout=600)
    killed = tmp_path / "killed"
    committed = killed / "checkpoints" / "14"
    code, out = _run_until(_train_cmd(killed, every7), lambda l: _step_of(l) >= 15 and committed.is_dir(),
                           signal.SIGKILL)
    assert code == -signal.SIGKILL, out
    resumed = subprocess.run(_train_cmd(killed, every7), env=child_env(1), capture_output=True, text=True, cwd=ROOT,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    def rows(workdir):
        return [(r["step"], r["split"], r["loss"], r.get("top1")) for r in
                map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())]

    assert rows(killed) == rows(reference)


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_ctrl_c_to_the_process_group_with_data_workers_is_one_line(tmp_path, sig):
    """A terminal's Ctrl-C (or its closing: SIGHUP) reaches every process of the group: each grain worker
    once printed its own KeyboardInterrupt traceback, and a hang-up ended the run like a kill, the steps
    since its last checkpoint lost; the workers ignore both now, the training process saves and says so."""
    proc = subprocess.Popen(_train_cmd(tmp_path, "--config.data.num_workers=2"), env=child_env(1, PYTHONUNBUFFERED=1),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            start_new_session=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if _step_of(line) >= 10:
                os.killpg(proc.pid, sig)
                break
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    out = "".join(lines) + (out or "")
    assert proc.returncode == 128 + sig, out
    _quiet(out)
    assert "checkpoint saved" in out


@pytest.mark.integration
def test_cli_unknown_config_field_is_one_line_with_the_closest_names(tmp_path):
    p = subprocess.run(_train_cmd(tmp_path, "--config.optimizer.learnin_rate=0.1"), env=child_env(1),
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.splitlines() == ["error: unknown config field 'optimizer.learnin_rate'; closest: "
                                     "optimizer.learning_rate, optimizer.name, optimizer.ema_decay (every field and "
                                     "its default: configs/default.py)"]
    assert not tmp_path.exists() or not (tmp_path / "checkpoints").exists()


@pytest.mark.integration
def test_multihost_options_without_multihost_are_refused(tmp_path):
    p = subprocess.run(_train_cmd(tmp_path, "--num_processes", "2", "--process_id", "0"), env=child_env(1),
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.splitlines() == ["error: --num_processes, --process_id need(s) --multihost (without it this "
                                     "process trains alone)"]
    assert not tmp_path.exists() or not (tmp_path / "checkpoints").exists()


def _quiet(out: str) -> None:
    for bad in ("Traceback", "Exception ignored", "Fatal Python error", "Segmentation fault", "KeyboardInterrupt"):
        assert bad not in out, out


@pytest.mark.integration
@pytest.mark.parametrize("moment", ["building the run", "making the initial state", "compiling the train step"])
def test_ctrl_c_during_start_up_ends_cleanly(tmp_path, moment):
    """SIGINT as soon as the command says it starts (the data and the run are being built), while XLA
    compiles the initial state, and while it compiles the train step: one line, exit 130, nothing saved."""
    workdir = tmp_path / "w"
    first = {"building the run": "training " + str(ROOT / "configs/lenet5_mnist5k.py") + " in ", "making the initial state": "compiling the initial "
             "state...", "compiling the train step": "compiling the train step..."}[moment]
    code, out = _run_until(_train_cmd(workdir), lambda line: first in line, signal.SIGINT)
    _quiet(out)
    assert code == 130, out
    assert out.splitlines()[-1] == "SIGINT received during start-up: stopped before training, nothing was saved"
    assert not (workdir / "checkpoints").exists()


@pytest.mark.integration
def test_a_second_ctrl_c_stops_at_once_and_cleanly(tmp_path):
    proc = subprocess.Popen(_train_cmd(tmp_path, "--config.num_train_steps=400"), env=child_env(1, PYTHONUNBUFFERED=1),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if _step_of(line) >= 15 and len([x for x in lines if x.startswith("step ")]) == 3:
                proc.send_signal(signal.SIGINT)
            if line.startswith("SIGINT received: checkpoint saved at step"):
                proc.send_signal(signal.SIGINT)  # while the command winds up
                break
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    out = "".join(lines) + out
    _quiet(out)
    assert proc.returncode == 130, out
    saved = int(lines[-1].split("at step ")[1].split(";")[0])
    assert train.load(tmp_path, "latest").step == saved  # the checkpoint it announced is committed


@pytest.mark.integration
def test_a_second_process_on_the_same_workdir_is_refused(tmp_path):
    first = subprocess.Popen(_train_cmd(tmp_path, "--config.num_train_steps=400"), env=child_env(1, PYTHONUNBUFFERED=1),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        for line in first.stdout:
            if line.startswith("step "):
                break
        second = subprocess.run(_train_cmd(tmp_path), env=child_env(1), capture_output=True, text=True, cwd=ROOT,
                                timeout=300)
        assert second.returncode == 2 and second.stdout == ""
        assert len(second.stderr.splitlines()) == 1
        assert second.stderr.startswith(f"error: workdir {tmp_path} is in use by another training process (pid "
                                        f"{first.pid} on ")
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=300)
        assert first.returncode == 128 + signal.SIGTERM   # stopped with its checkpoint saved
    finally:
        first.kill()


def _namespaces() -> bool:
    """Whether this machine lets us be root of our own user and mount namespaces (unshare -rm)."""
    return bool(shutil.which("unshare")) and subprocess.run(
        ["unshare", "-rm", "mount", "-t", "tmpfs", "tmpfs", "/mnt"], capture_output=True).returncode == 0


@pytest.mark.integration
@pytest.mark.parametrize("fault", ["erofs", "enospc", "mount-ro", "mount-full"])
def test_a_checkpoint_folder_that_fails_is_one_error_within_seconds(tmp_path, fault):
    """The run fails once checkpoints 10 and 20 are committed: the injected OSError (any machine), or a
    real read-only bind mount and a real full tmpfs (where we may mount in our own namespaces). It
    ends within the timeout, with one error line naming the folder and the cause; the committed
    checkpoints keep their bytes."""
    if fault.startswith("mount") and not _namespaces():
        pytest.skip("unshare -rm (user and mount namespaces) is not available here")
    workdir, hashes = tmp_path / "w", tmp_path / "hashes.json"
    worker = [sys.executable, str(WORKERS / "failing_disk.py"), fault, str(hashes), *_train_cmd(workdir)[3:]]
    p = subprocess.run((["unshare", "-rm"] if fault.startswith("mount") else []) + worker, env=child_env(1),
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    _quiet(p.stdout + p.stderr)
    cause = {"erofs": "Read-only file system", "mount-ro": "Read-only file system"}.get(fault, "No space left on device")
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert p.returncode == 2 and errors == [p.stderr.splitlines()[-1]], p.stderr
    assert errors[0].startswith(f"error: cannot write checkpoint 30 in {workdir / 'checkpoints'}: {cause} (the "
                                f"checkpoints already committed are kept as they were: 10, 20) (details: "
                                f"{workdir / 'train.log'})")
    if fault != "mount-full":  # a tmpfs is gone with its namespace
        before = json.loads(hashes.read_text())
        assert {k for k in before if k.split("/")[0] not in ("10", "20")} == set()
        assert {k: v for k, v in _hashes(workdir / "checkpoints").items() if k.split("/")[0] in ("10", "20")} == before
        assert "Traceback" in (workdir / "train.log").read_text()  # the details


def _hashes(folder):
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file()}


@pytest.mark.integration
@pytest.mark.parametrize("args, message", [
    (["--workdir", ""], "--workdir '': empty; name a folder (e.g. runs/lenet5)"),
    (["--workdir", "w", "--config.batch_size", "--workdir", "w2"],
     "--config.batch_size: no value given (--config.batch_size=VALUE)"),
])
def test_cli_refuses_an_empty_workdir_and_an_override_without_a_value(tmp_path, args, message):
    """Once: ``--workdir ''`` trained into the current directory; ``--config.batch_size --workdir w2`` took
    ``--workdir`` as the batch size. One line, nothing written (run from ``tmp_path``)."""
    p = subprocess.run([sys.executable, "-m", "train", "--config", str(ROOT / "configs/lenet5_mnist5k.py"), *args],
                       env=child_env(1), capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert (p.returncode, p.stdout, p.stderr) == (2, "", f"error: {message}\n")
    assert list(tmp_path.iterdir()) == []


def test_evaluate_command_refuses_an_empty_workdir(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert evaluation.main(["--workdir", " "]) == 2
    assert capsys.readouterr().err == "error: --workdir ' ': empty; name a folder (e.g. runs/lenet5)\n"
    assert list(tmp_path.iterdir()) == []


def test_evaluate_command_prints_the_report(trained_lenet, tmp_path, capsys):
    workdir, r = trained_lenet
    assert evaluation.main(["--workdir", str(workdir), "--checkpoint", "latest", "--output_dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"lenet5 step {r.step} on test (1000 examples)" in out and f"top-1 {r.eval['top1']:.4f}" in out
    assert (tmp_path / f"confusion_step{r.step}_test.png").is_file()
    assert evaluation.main(["--workdir", str(tmp_path / "nothing")]) == 2
    assert "error: no checkpoints in" in capsys.readouterr().err


def _children(pid):
    kids = []
    for task in (Path(f"/proc/{pid}/task")).iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


@pytest.mark.integration
def test_data_workers_end_with_a_killed_training_process(tmp_path):
    """SIGKILL of the training process once left its grain workers running (~200 MB each, for ever)."""
    import os
    import select

    proc = subprocess.Popen(_train_cmd(tmp_path, "--config.num_train_steps=4000", "--config.data.num_workers=2"),
                            env=child_env(1, PYTHONUNBUFFERED=1), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=ROOT)
    workers = []
    try:
        for line in proc.stdout:
            if line.startswith("step "):
                break
        workers = [k for k in _children(proc.pid) if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]
        assert len(workers) == 2
        proc.kill()
        proc.wait(timeout=60)
        for pid in workers:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue   # already gone
            try:
                assert select.select([fd], [], [], 60)[0], f"worker {pid} outlived the training process"
            finally:
                os.close(fd)
    finally:
        proc.kill()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.integration
@pytest.mark.parametrize("closed", ["1>&-", "2>&-", ">/dev/full", "| true"])
def test_a_closed_or_full_standard_stream_does_not_stop_the_run(tmp_path, closed):
    """A launcher that closes stdout (``>&-``) once got an AttributeError traceback before anything ran;
    with stderr closed the run ended with status 1 and no word anywhere; stdout on a full disk
    (/dev/full) or into a pipe whose reader exited (``| true``) stopped it at its first console line
    with a bare errno line, status 2, nothing saved."""
    import shlex

    cmd = " ".join(map(shlex.quote, _train_cmd(tmp_path, "--config.num_train_steps=6"))) + f" {closed}"
    p = subprocess.run(["bash", "-c", cmd], env=child_env(1), capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    log = (tmp_path / "train.log").read_text()
    assert "done: step 6" in log and "Traceback" not in p.stderr
    if closed == ">/dev/full":
        assert "warning: stdout cannot be written (No space left on device); the run goes on" in log
    if closed == "| true":
        assert "warning: stdout cannot be written (Broken pipe); the run goes on" in log
