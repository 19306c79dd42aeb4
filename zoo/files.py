"""Files written so that nobody ever sees half of one: the content goes to a temporary file beside the
destination, which replaces the destination (``os.replace``: atomic) only once it is complete. A
destination that existed stays whole until then; a failed write leaves no temporary file, and the
temporary file of a process killed outright (SIGKILL, SIGTERM) is removed by the next writer of that
destination once it is :data:`STALE_PART_S` old. Also: the check of a file name a user gives to write to."""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path

STALE_PART_S = 600.0   # a temporary file untouched this long belongs to a process that is gone


@contextlib.contextmanager
def written_atomically(path: Path):
    """Yield a temporary path beside ``path`` to write; on success it becomes ``path`` (mode 0644, not
    mkstemp's 0600, so a shared cache stays readable), on any exception it is removed. An OSError of
    the temporary file itself names ``path`` (``cannot write PATH: ...``), not the hidden ``.part``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as e:
        raise _cannot_write(path, e) from e
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and tmp in (e.filename, e.filename2):
            raise _cannot_write(path, e) from e
        raise


def save_figure(fig, path, **savefig_kwargs) -> Path:
    """``fig.savefig(path)`` through :func:`written_atomically`: a full disk or a kill never leaves a
    partial image where an earlier one was (the format from ``path``'s suffix, PNG without one)."""
    path = Path(path)
    with written_atomically(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png", **savefig_kwargs)
    return path


def same_file(a, b) -> bool:
    """Whether paths ``a`` and ``b`` name one file or folder (by path, or by inode through links; one that
    does not exist is the same only by path)."""
    if Path(a).resolve() == Path(b).resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _cannot_write(path: Path, e: OSError) -> OSError:
    """``e`` (same type and errno) saying that ``path`` cannot be written, and why."""
    error = type(e)(f"cannot write {path}: {e.strerror or e}")
    error.errno = e.errno
    return error


def part_name_prefix(path: Path) -> str:
    """The prefix of ``path``'s temporary files (``.<name>.<random>.part`` beside it)."""
    return f".{path.name}."


def remove_stale_parts(path: Path, older_than_s: float = STALE_PART_S) -> int:
    """Remove the temporary files of ``path`` (``.<name>.*.part``) not modified for ``older_than_s``:
    those of a writer that was killed. A live writer's file is younger (a download that stalls for
    a minute fails). Returns how many were removed; a file that cannot be removed is left."""
    now, removed = time.time(), 0
    for part in path.parent.glob(f"{part_name_prefix(path)}*.part"):
        with contextlib.suppress(OSError):
            if now - part.stat().st_mtime > older_than_s:
                part.unlink()
                removed += 1
    return removed


def safe_name(name, limit: int = 80) -> str:
    """``name`` as part of a file name: each run of characters other than letters, digits, ``_ . -``
    becomes ``-``; at most ``limit`` characters."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-")[:limit] or "x"


def _nearest_folder(path: Path, argument: str, shown: str) -> Path:
    """The nearest existing folder of ``path`` (itself or a parent); ValueError when that is a file."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"{argument}={shown}: {existing} is a file, not a folder")
    return existing


def check_folder_to_write(value, argument: str) -> Path:
    """``value`` (the ``argument`` a user gave) names a folder to write into, checked before any work:
    not empty (``''`` would be the current directory), not a file nor below one, and writable (its
    nearest existing folder takes a file). Raises ValueError naming ``argument``; creates nothing."""
    shown = repr(str(value))
    if not str(value).strip():
        raise ValueError(f"{argument}={shown}: empty; name a folder")
    path = Path(value).expanduser()
    existing = _nearest_folder(path, argument, shown)
    if (e := cannot_write_in(existing)) is not None:
        raise ValueError(f"{argument}={shown}: {existing} cannot be written ({e.strerror or e})")
    return path


def cannot_write_in(folder: Path) -> OSError | None:
    """What stops a file from being made in ``folder`` (None: nothing): a temporary file, made and gone."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        return e
    return None


def check_file_name(value: str, argument: str, example: str) -> Path:
    """``value`` (the ``argument`` a user gave) names a file to write: not empty, not a folder
    (existing, or written with a trailing ``/``), and not below a file. ``example``: a file name that
    would do (``model.onnx``). Raises ValueError naming ``argument``."""
    path = Path(value).expanduser()
    if not value.strip() or value.endswith(("/", os.sep)) or path.is_dir():
        raise ValueError(f"{argument}={value!r}: the file to write is needed (a path such as {example}, not a folder)")
    _nearest_folder(path.parent, argument, repr(value))
    return path
