"""One training process per workdir: ``with WorkdirLock(workdir):``.

``fcntl.flock`` on ``WORKDIR/.lock``: the OS releases it when the process ends, however it ends
(``kill -9`` included), so a crashed run never leaves the workdir locked; a second process that
trains, or sets a corrupt checkpoint aside, in the same workdir is refused at once instead of
interleaving its checkpoints with the first one's. The file names the holder (pid, host, start).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import threading
import time
from pathlib import Path


class WorkdirBusyError(RuntimeError):
    """Another process trains in this workdir."""


class WorkdirUnwritableError(OSError):
    """The workdir cannot be created or written."""

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno N]"
        return str(self.strerror)


def unwritable(workdir: Path, e: OSError) -> WorkdirUnwritableError:
    """The one-line error for a workdir that cannot be made or written (``e``: what the OS said)."""
    if workdir.exists() and not workdir.is_dir():
        return WorkdirUnwritableError(e.errno, f"cannot write in the workdir {workdir}: it is a file, not a folder; "
                                               f"choose another --workdir")
    return WorkdirUnwritableError(e.errno, f"cannot write in the workdir {workdir}: {e.strerror or e}")


def check_outputs(workdir: Path) -> None:
    """The run's own files that exist (result.json, metrics.jsonl, the TensorBoard and checkpoint
    folders) can be written, checked before anything is trained: a read-only result.json once failed
    the run after its last checkpoint, a file named ``checkpoints`` after an epoch, and a FIFO named
    metrics.jsonl blocked it for ever. :class:`WorkdirUnwritableError` (one line) naming the file."""
    from zoo.files import cannot_write_in  # noqa: PLC0415  (imports zoo: not at this light module's start)

    for path, folder in ((workdir / "result.json", False), (workdir / "metrics.jsonl", False),
                         (workdir / "tensorboard", True), (workdir / "checkpoints", True)):
        if not path.exists():
            continue
        if path.is_dir() != folder:
            e = (IsADirectoryError(errno.EISDIR, "it is a folder, not a file") if path.is_dir()
                 else NotADirectoryError(errno.ENOTDIR, "it is a file, not a folder"))
        elif not folder and not path.is_file():   # a FIFO, a socket, a device: opening one can block
            e = OSError(errno.EINVAL, "it is not a regular file")
        else:
            e = cannot_write_in(path) if folder else _cannot_append(path)
        if e is not None:
            raise WorkdirUnwritableError(e.errno, f"cannot write the run's {path} ({e.strerror or e}); nothing was "
                                                  f"changed: make it writable, or choose another --workdir")


def _cannot_append(path: Path) -> OSError | None:
    try:
        open(path, "a").close()   # appends nothing
    except OSError as e:
        return e
    return None


def make_workdir(workdir: Path) -> None:
    """``mkdir -p workdir``; :class:`WorkdirUnwritableError` (one line) when it cannot be made."""
    try:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise unwritable(Path(workdir), e) from None


_held: dict[Path, list] = {}   # lock path -> [fd, depth, created the workdir, thread]: held by this process


class WorkdirLock:
    """Exclusive, per process: ``with WorkdirLock(workdir):`` (creates the workdir; a second process
    gets :class:`WorkdirBusyError` at once, and so does another thread). Re-entrant in the thread
    that holds it; on release the lock file goes, and the workdir too if this lock created it and it
    stayed empty."""

    NAME = ".lock"

    def __init__(self, workdir: str | os.PathLike):
        self.workdir = Path(workdir).absolute()
        self.path = self.workdir / self.NAME

    def try_acquire(self) -> bool:
        """Take the lock if no other process holds it (False otherwise, or if the file cannot be made)."""
        try:
            return self._acquire()
        except OSError:
            return False

    def _acquire(self) -> bool:
        if self.path in _held:
            if _held[self.path][3] != threading.get_ident():
                return False
            _held[self.path][1] += 1
            return True
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:  # not unlinked by a releasing holder
                    break
            except (BlockingIOError, FileNotFoundError):
                if not self.path.exists():
                    os.close(fd)
                    continue
                os.close(fd)
                return False
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        _held[self.path] = [fd, 1, False, threading.get_ident()]
        return True

    def __enter__(self) -> WorkdirLock:
        created = not self.workdir.exists()
        make_workdir(self.workdir)
        if self.path.exists() and not self.path.is_file():   # a folder (or a FIFO) in the lock file's place
            raise WorkdirUnwritableError(errno.EINVAL, f"cannot lock the workdir {self.workdir}: {self.path} is not a "
                                                       f"regular file; remove it, or choose another --workdir")
        try:
            acquired = self._acquire()
        except OSError as e:
            raise unwritable(self.workdir, e) from None
        if not acquired:
            try:
                holder = self.path.read_text().strip() or "unknown process"
            except OSError:
                holder = "unknown process"
            raise WorkdirBusyError(f"workdir {self.workdir} is in use by another training process ({holder}); nothing "
                                   f"was changed. Wait for it to finish, or use another --workdir")
        _held[self.path][2] = _held[self.path][2] or created
        return self

    def release(self) -> None:
        entry = _held.get(self.path)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1]:
            return
        del _held[self.path]
        fd, _, created, _ = entry
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                self.workdir.rmdir()   # only if empty

    def __exit__(self, *exc) -> None:
        self.release()


