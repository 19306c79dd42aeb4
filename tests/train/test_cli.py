"""The command lines: ``python -m train`` (kill and resume bit-identical, SIGTERM/SIGINT save and exit,
unknown config fields named) and ``python -m train.evaluate``."""
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

import train
from helpers import ROOT, child_env
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


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_exits_cleanly(tmp_path, sig):
    code, out = _run_until(_train_cmd(tmp_path), lambda l: _step_of(l) >= 15, sig)
    assert code == 0, out
    assert "checkpoint saved" in out and "Traceback" not in out
    saved = max(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert 15 <= saved < 40


@pytest.mark.integration
def test_cli_unknown_config_field_is_named(tmp_path):
    p = subprocess.run(_train_cmd(tmp_path, "--config.optimizer.learnin_rate=0.1"), env=child_env(1),
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode != 0 and "learnin_rate" in p.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_evaluate_command_prints_the_report(trained_lenet, tmp_path, capsys):
    workdir, r = trained_lenet
    assert evaluation.main(["--workdir", str(workdir), "--checkpoint", "latest", "--output_dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"lenet5 step {r.step} on test (1000 examples)" in out and f"top-1 {r.eval['top1']:.4f}" in out
    assert (tmp_path / f"confusion_step{r.step}_test.png").is_file()
    assert evaluation.main(["--workdir", str(tmp_path / "nothing")]) == 2
    assert "error: no checkpoints in" in capsys.readouterr().err
