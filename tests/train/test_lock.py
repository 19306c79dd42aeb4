"""train.lock: one training process per workdir. A second process (or thread) is refused at once with
nothing changed, a killed holder leaves nothing locked, and the lock leaves no file behind."""
import signal
import subprocess
import sys
import threading

import pytest

import train
from helpers import ROOT, child_env, quick, snapshot
from train import lock

HOLD = ("import sys; from train.lock import WorkdirLock\n"
        "with WorkdirLock(sys.argv[1]):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.read()\n")


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of ``tmp_path / 'w'`` until the test ends (or kills it)."""
    workdir = tmp_path / "w"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=child_env(1), cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    yield workdir, proc
    proc.kill()
    proc.wait(timeout=60)


def test_a_second_process_is_refused_at_once_with_nothing_changed(holder):
    workdir, proc = holder
    before = snapshot(workdir)
    with pytest.raises(lock.WorkdirBusyError, match=rf"workdir {workdir} is in use .*pid {proc.pid}"):
        train.fit(quick(num_train_steps=2), workdir)
    assert snapshot(workdir) == before


def test_a_killed_holder_leaves_the_workdir_free(holder):
    workdir, proc = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    with lock.WorkdirLock(workdir):  # the OS released it with the process
        assert (workdir / lock.WorkdirLock.NAME).is_file()
    assert not (workdir / lock.WorkdirLock.NAME).exists()


def test_another_thread_is_refused_and_the_holder_may_reenter(tmp_path):
    workdir = tmp_path / "new" / "w"
    refused = []
    with lock.WorkdirLock(workdir):
        with lock.WorkdirLock(workdir):  # the same thread: re-entrant
            pass
        t = threading.Thread(target=lambda: refused.append(lock.WorkdirLock(workdir).try_acquire()))
        t.start()
        t.join()
        assert refused == [False]
    assert not workdir.exists() and (tmp_path / "new").is_dir()  # made by the lock and left empty: removed


def test_an_unwritable_workdir_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(lock.WorkdirUnwritableError, match=r"^cannot write in the workdir .*file/w: Not a directory$"):
        with lock.WorkdirLock(tmp_path / "file" / "w"):
            pass
    with pytest.raises(lock.WorkdirUnwritableError, match=r"^cannot write in the workdir .*file: it is a file, not a "
                                                          r"folder; choose another --workdir$"):
        with lock.WorkdirLock(tmp_path / "file"):
            pass
    assert (tmp_path / "file").read_text() == ""


_CHECK = "import sys; from pathlib import Path; from train import lock; lock.check_outputs(Path(sys.argv[1]))"


@pytest.mark.parametrize("name", ["metrics.jsonl", "result.json"])
def test_a_fifo_in_a_run_files_place_is_refused_not_waited_on(tmp_path, name):
    """A FIFO named metrics.jsonl / result.json blocked the run for ever in open() (one SIGTERM did not
    stop it). A child process, so that the old behaviour fails the test by its timeout, not a hang."""
    import os

    os.mkfifo(tmp_path / name)
    r = subprocess.run([sys.executable, "-c", _CHECK, str(tmp_path)], capture_output=True, text=True, timeout=120,
                       env=child_env(1), cwd=ROOT)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == (
        f"train.lock.WorkdirUnwritableError: cannot write the run's {tmp_path / name} (it is not a regular file); "
        f"nothing was changed: make it writable, or choose another --workdir")


def test_a_file_named_checkpoints_is_refused_before_training(tmp_path):
    """It failed the run after its first epoch ('File exists')."""
    (tmp_path / "checkpoints").write_text("mine")
    with pytest.raises(lock.WorkdirUnwritableError, match=rf"^cannot write the run's {tmp_path / 'checkpoints'} "
                                                          r"\(it is a file, not a folder\)"):
        lock.check_outputs(tmp_path)
    assert (tmp_path / "checkpoints").read_text() == "mine"


def test_a_folder_in_the_lock_files_place_is_named(tmp_path):
    """Once 'cannot write in the workdir ...: Is a directory', naming no .lock."""
    (tmp_path / ".lock").mkdir()
    with pytest.raises(lock.WorkdirUnwritableError, match=rf"^cannot lock the workdir {tmp_path}: {tmp_path / '.lock'} "
                                                          r"is not a regular file; remove it, or choose another"):
        with lock.WorkdirLock(tmp_path):
            pass
