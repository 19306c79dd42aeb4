"""train.data.workers: starting grain worker processes. A worker that dies while it is being started
must end the wait with grain's "Worker process was terminated unexpectedly" error, never block the
training process (CPython gh-118981). The check runs in a child process with a time limit, so the old
behaviour fails the test instead of hanging it."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A pipeline whose pickled dataset is far above a pipe's 64 KB; its worker is "started" as /bin/false,
# which exits 1 without reading a byte of its start-up data: the death of a worker killed in its first
# moments (while it imports its modules), made certain.
_SCRIPT = textwrap.dedent("""
    import multiprocessing.spawn, pickle, sys
    sys.path.insert(0, "tests")
    from helpers import data_cfg, load_data

    c = data_cfg(name="synthetic", synthetic_num_examples=400, num_workers=1)
    pipe = load_data(c, batch_size=8, image_shape=(64, 64, 3))
    assert len(pickle.dumps(pipe.source)) > 1 << 20
    multiprocessing.spawn.get_executable = lambda: b"/bin/false"
    try:
        next(iter(pipe))
    except RuntimeError as e:
        print("raised:", e)
""")


@pytest.mark.integration  # a subprocess
def test_a_worker_that_dies_while_it_starts_ends_the_wait_with_grains_error():
    try:
        out = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, capture_output=True, text=True,
                             timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("the training process blocked for ever starting a worker that had died")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "raised: Worker process was terminated unexpectedly with exit code 1" in out.stdout, out.stdout


def test_only_the_spawn_context_of_a_python_without_the_fix_is_changed():
    from multiprocessing import context, popen_spawn_posix

    from train.data import workers

    workers.prepare()
    popen = context.SpawnProcess._Popen
    if sys.version_info[:2] in ((3, 11), (3, 12)):
        assert popen is workers._Popen and issubclass(popen, popen_spawn_posix.Popen)
    assert context.ForkServerProcess._Popen is not workers._Popen


def test_a_batch_awaited_too_long_is_said_once_and_its_arrival_too(monkeypatch):
    """A stopped data worker (SIGSTOP, a stuck read) froze the progress display without a word."""
    import threading

    from train.data import workers

    monkeypatch.setattr(workers.InputWatch, "WAIT_S", 0.05)
    said, spoken = [], threading.Event()

    def say(text):
        said.append(text)
        spoken.set()

    class Stalled:   # its batch comes only once the watch has spoken (never: the test's own timeout)
        def __next__(self):
            if not spoken.wait(timeout=60):
                raise AssertionError("the watch never spoke")
            return "batch"

    watch = workers.InputWatch(say)
    try:
        assert watch.next(Stalled()) == "batch"
        batches = iter(["quick", "and another"])   # as run_eval iterates an eval pipe: no wait, nothing said
        assert list(iter(lambda: watch.next(batches, None), None)) == ["quick", "and another"]
    finally:
        watch.close()
    assert said[0] == "no input batch for 0 s: is a data worker process stopped or stuck (data.num_workers)? " \
                      "still waiting"
    assert len(said) == 2 and said[1].startswith("input data came after ")
