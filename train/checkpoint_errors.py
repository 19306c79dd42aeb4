"""The checkpoint errors (re-exported by ``train.checkpoint``) and what a read or write error of
``train/checkpoint.py`` means: a damaged checkpoint, which a reader may set aside, or the machine's
state (permissions, memory, file handles, a full or read-only disk), after which reading again may
work and nothing is moved."""
from __future__ import annotations

import errno
import os
from pathlib import Path

# read errors of the machine's state, not of the checkpoint: reading again (later, elsewhere) may work
_NOT_DAMAGE = (PermissionError, MemoryError, ImportError)
_NOT_DAMAGE_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.EIO, errno.EAGAIN}
_NOT_DAMAGE_CODES = ("PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "UNAVAILABLE")   # tensorstore's status codes


class WorkdirMismatchError(ValueError):
    """The workdir holds checkpoints of another model, class count or train-state structure."""


class NoCheckpointError(FileNotFoundError):
    """No readable checkpoint in the workdir."""


class CorruptCheckpointError(ValueError):
    """A checkpoint reads, but not as it was written (checksum mismatch, non-finite values)."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (read-only folder, full disk, ...)."""


def cause(e: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


def is_damage(e: BaseException) -> bool:
    """Whether a read error means the checkpoint is damaged, so a reader may set it aside; not: we may
    not read it, memory, file handles or a library ran out, the disk failed to answer (reading again
    may work: the checkpoint stays where it is)."""
    if isinstance(e, _NOT_DAMAGE) or (isinstance(e, OSError) and e.errno in _NOT_DAMAGE_ERRNOS):
        return False
    return not any(code in str(e) for code in _NOT_DAMAGE_CODES)


def write_cause(e: BaseException, directory: Path) -> tuple[str, int]:
    """``(cause, errno)`` of a failed save into ``directory``: a read-only mount, the OSError's own,
    a full disk or a refused permission in tensorstore's words, else the exception itself (EIO)."""
    text = str(e)
    if read_only_mount(directory):
        return os.strerror(errno.EROFS), errno.EROFS
    if isinstance(e, OSError) and e.errno:
        return e.strerror or os.strerror(e.errno), e.errno
    if "RESOURCE_EXHAUSTED" in text or "No space left" in text:
        return os.strerror(errno.ENOSPC), errno.ENOSPC
    if "PERMISSION_DENIED" in text or "Permission denied" in text:
        return os.strerror(errno.EACCES), errno.EACCES
    return cause(e), errno.EIO


def read_only_mount(path: Path) -> bool:
    """Whether ``path`` (or the nearest folder above it that exists) is on a read-only mount."""
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
