"""``python -m train --multihost`` with two processes on 127.0.0.1 (gloo CPU collectives, one device
each), through the command line itself: it trains (once it stopped at start-up: the backend was
asked for before ``jax.distributed.initialize``), processes given another config are refused together,
SIGTERM to one process stops both at one step with a checkpoint, a process that dies lets the other
stop at once, and a bad --process_id is one line before any waiting."""
import signal
import socket
import subprocess
import sys
import time

import pytest

from helpers import ROOT, child_env


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(workdir, port, extra=(), *more):
    cmd = [sys.executable, "-m", "train", "--config", str(ROOT / "configs/lenet5_mnist5k.py"), "--workdir", str(workdir),
           "--config.schedule.warmup_epochs=0", "--config.log_every_steps=5", "--multihost", "--num_processes", "2",
           "--coordinator_address", f"127.0.0.1:{port}"]
    return [subprocess.Popen([*cmd, "--process_id", str(i), *extra, *(more[i] if more else ())],
                             env=child_env(1, PYTHONUNBUFFERED=1), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, cwd=ROOT) for i in (0, 1)]


def _finish(procs, timeout=300):
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=timeout)[0])
        finally:
            p.kill()
    return [p.returncode for p in procs], outs


@pytest.mark.integration
def test_two_processes_train_and_another_config_is_refused_by_both(tmp_path):
    codes, outs = _finish(_start(tmp_path / "w", _port(), ["--config.num_epochs=0.2"]))
    assert codes == [0, 0], outs
    assert outs[0].splitlines()[-1].startswith("done: step 13 (epoch 0.21)")
    assert sorted(p.name for p in (tmp_path / "w" / "checkpoints").iterdir()) == ["13"]

    codes, outs = _finish(_start(tmp_path / "v", _port(), ["--config.num_epochs=0.2"], [],
                                 ["--config.optimizer.learning_rate=0.5"]))
    assert codes == [2, 2], outs
    assert outs[1].splitlines()[-1] == ("error: process 1 was given another run than process 0: "
                                        "optimizer.learning_rate 0.5 (process 0: 0.002); every process needs the same "
                                        "config and --workdir (a folder all of them share)")
    assert outs[0].splitlines()[-1].startswith("error: process(es) 1 were given another config or --workdir")
    assert not (tmp_path / "v" / "checkpoints").exists()


def _long_run_until_step(tmp_path, step, act):
    """Two processes on a long run; at process 0's progress line of ``step``, ``act(procs)``. Returns
    ``(exit codes, outputs, seconds from the act to both ends)``."""
    procs = _start(tmp_path, _port(), ["--config.num_epochs=30"])
    try:
        for line in procs[0].stdout:
            if line.startswith("step ") and int(line.split()[1].split("/")[0]) >= step:
                act(procs)
                break
        t = time.monotonic()
        codes, outs = _finish(procs, timeout=120)
        return codes, outs, time.monotonic() - t
    finally:
        for p in procs:
            p.kill()


@pytest.mark.integration
def test_sigterm_to_one_process_stops_both_at_one_step_with_a_checkpoint(tmp_path):
    """JAX's preemption notifier takes SIGTERM once jax.distributed is up: the run once trained on to
    the end, exit 0, nothing said."""
    codes, outs, seconds = _long_run_until_step(tmp_path, 20, lambda procs: procs[1].send_signal(signal.SIGTERM))
    assert codes == [143, 143] and seconds < 60, outs
    saved = [int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
    assert len(saved) == 1 and outs[0].splitlines()[-1] == (f"interrupted by SIGTERM at step {saved[0]}; checkpoint "
                                                           f"saved in {tmp_path}")


@pytest.mark.integration
def test_a_process_that_dies_lets_the_others_stop_at_once(tmp_path):
    """The survivor once printed its error line, then waited ~90 s at JAX's shutdown barrier and
    aborted with a native stack (status 134)."""
    codes, outs, seconds = _long_run_until_step(tmp_path, 10, lambda procs: procs[1].kill())
    assert codes[0] == 1 and seconds < 30, outs[0][-3000:]
    last = outs[0].splitlines()[-1]
    assert last.startswith("error: ") and "did another process of the run stop?" in last


@pytest.mark.integration
def test_a_process_id_outside_the_count_is_one_line_before_waiting(tmp_path):
    p = subprocess.run([sys.executable, "-m", "train", "--config", str(ROOT / "configs/lenet5_mnist5k.py"), "--workdir",
                        str(tmp_path), "--multihost", "--num_processes", "2", "--process_id", "2",
                        "--coordinator_address", "127.0.0.1:1"], env=child_env(1), capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert (p.returncode, p.stdout, p.stderr) == (2, "", "error: --process_id=2: allowed 0..1 (--num_processes 2)\n")
