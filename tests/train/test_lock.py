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
