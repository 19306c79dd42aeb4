"""What reaches the console and what goes to the workdir's log file.

The command lines call :func:`for_command` once: the console then shows the project's own messages
(loggers ``train*`` and ``zoo*``, INFO and up) and other libraries' warnings, one line each, never a
traceback; ``WORKDIR/train.log`` (training) gets everything, tracebacks included, with timestamps, and a copy
of what the console got as plain text (progress lines, at most one per 10 s behind a progress bar;
the run's summaries; :func:`say`).
orbax-checkpoint's own reports (every save at INFO, a failed save as several tracebacks from its
threads, and asyncio's "Task/Future exception was never retrieved" for its other writes) go to the log
file only: ``train.checkpoint`` reports what a user can act on.

Two known kinds of noise are silenced where they arise, for library users too:

* :func:`quiet`: a third-party logger's messages that start with given words (orbax's notice that a
  checkpoint folder is opened read-only, TFDS's warning about ``dataset_info.json`` in a folder that
  does not exist while we check whether a dataset is prepared);
* :func:`ignore_closed_loop_callbacks`: after a failed read, tensorstore's pending callbacks find
  orbax's event loop closed and report ``RuntimeError: Event loop is closed`` as "unraisable"
  exceptions, a traceback each; they go to the log at DEBUG level.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import threading
from pathlib import Path

OWN = ("train", "zoo")
log = logging.getLogger("train")
LOG_FILE = "train.log"
_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


DETAILS = "train.details"   # the log file only: tracebacks behind a one-line error
TRANSCRIPT = "train.transcript"   # the log file only: what the console got as plain text (progress, summaries)


def to_log_file(text: str) -> None:
    """Copy a line that was printed (a progress line, an epoch summary, the final ``done:``) to the log file
    of :func:`for_command` (nowhere else: the transcript logger does not propagate, so a library user's
    logging at INFO does not show the line twice)."""
    logging.getLogger(TRANSCRIPT).info(text)


logging.getLogger(TRANSCRIPT).propagate = False


def say(text: str) -> None:
    """Print ``text`` on stdout and copy it to the log file."""
    print(text, flush=True)
    to_log_file(text)


def _own(record: logging.LogRecord) -> bool:
    return record.name.split(".")[0] in OWN


def details(message: str, error: BaseException) -> None:
    """``message`` and the traceback of ``error``, for the log file only (the console has had its line)."""
    logging.getLogger(DETAILS).info("%s: %s", message, error, exc_info=(type(error), error, error.__traceback__))


TMP_SUFFIX = ".orbax-checkpoint-tmp"  # orbax's folder for a save in progress (atomicity_types.TMP_DIR_SUFFIX)


def _from_orbax(record: logging.LogRecord) -> bool:
    """orbax's own records, and asyncio's report of an exception nobody retrieved after a failed save:
    an orbax task (the writes gathered with the one that raised: "Task exception was never
    retrieved\nfuture: <Task ... coro=<NumpyHandler._open_and_write() ... /orbax/...>"), or a bare
    tensorstore future writing into orbax's temporary folder ("Future exception was never
    retrieved\nfuture: <Future finished exception=ValueError('RESOURCE_EXHAUSTED: Error writing ... at
    local file \".../30.orbax-checkpoint-tmp/...\"')>")."""
    if "/orbax/" in record.pathname.replace("\\", "/"):
        return True
    message = record.getMessage().replace("\\", "/")
    return record.name == "asyncio" and ("/orbax/" in message or TMP_SUFFIX in message or TENSORSTORE in message)


TENSORSTORE = "tensorstore_spec="  # in every tensorstore error: only checkpoints read and write through it


class _ConsoleFilter(logging.Filter):
    """Ours from ``level`` up, other libraries' warnings (orbax's: log file only)."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name in (DETAILS, TRANSCRIPT):
            return False
        if _own(record):
            return record.levelno >= self.level
        return record.levelno >= logging.WARNING and not _from_orbax(record)


class _ConsoleFormatter(logging.Formatter):
    """``message`` for INFO, ``warning: message`` / ``error: message`` above; no traceback (it would
    also be cached on the record, and the log file's formatter must still write it)."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        return text


class _Console(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a message comes (redirected, or captured by a test)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def for_command(workdir: str | Path | None = None, *, verbose: bool = False) -> Path | None:
    """Set up logging for a command-line run (see the module docstring); returns the log file
    (None without ``workdir`` or when it cannot be written: then the console is all there is)."""
    root = logging.getLogger()
    for h in list(logging.getLogger(TRANSCRIPT).handlers):   # ours from before
        logging.getLogger(TRANSCRIPT).removeHandler(h)
    for h in list(root.handlers):  # ours from before, and the console handler absl's first message adds
        if getattr(h, "_zoo_handler", False) or (type(h) is logging.StreamHandler
                                                 and h.stream in (sys.stderr, sys.__stderr__)):
            root.removeHandler(h)
            if getattr(h, "_zoo_handler", False):
                h.close()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax reports every save at INFO
    console = _Console()
    console.addFilter(_ConsoleFilter(logging.DEBUG if verbose else logging.INFO))
    console.setFormatter(_ConsoleFormatter())
    console._zoo_handler = True
    root.addHandler(console)
    threading.excepthook = _thread_exception
    if workdir is None:
        return None
    path = Path(workdir) / LOG_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not path.is_file():   # a FIFO would block the open for ever
            raise OSError(errno.EINVAL, "it is not a regular file")
        handler = _LogFile(path, encoding="utf-8", delay=False)
    except OSError as e:
        logging.getLogger("train").warning("cannot write the log file %s (%s); logging to the console only", path,
                                           e.strerror or e)
        return None
    handler.setFormatter(logging.Formatter(_FILE_FORMAT))
    handler._zoo_handler = True
    root.addHandler(handler)
    logging.getLogger(TRANSCRIPT).addHandler(handler)
    return path


class _LogFile(logging.FileHandler):
    """The log file. The first record it cannot write (a full disk) turns it off with one console
    line: logging's default printed a traceback per record, hundreds once a disk filled."""

    failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802  (logging's name)
        if not self.failed:
            self.failed = True
            e = sys.exc_info()[1]
            print(f"warning: cannot write the log file {self.baseFilename} ({getattr(e, 'strerror', None) or e}); "
                  f"logging to the console only", file=sys.stderr, flush=True)

    def close(self) -> None:
        try:
            super().close()
        except OSError:   # the last flush, on a full disk: said already (or nothing left to say)
            self.failed = True


class ForgivingStream:
    """A training run's (or search's) stdout / stderr: the first write or flush that fails (a full disk
    behind a redirection, ``> /dev/full``, an I/O error, a pipe whose reader exited, ``| head -1``) turns
    the stream off with one line in the log file, and the run goes on to its end or its next signal,
    checkpoints and all (it stopped at its first console line with a bare errno line, status 2, nothing
    saved)."""

    def __init__(self, stream, name: str):
        self._stream, self._name, self._off = stream, name, False

    def write(self, text: str) -> int:
        if not self._off:
            try:
                return self._stream.write(text)
            except OSError as e:
                self._turn_off(e)
        return len(text)

    def flush(self) -> None:
        if not self._off:
            try:
                self._stream.flush()
            except OSError as e:
                self._turn_off(e)

    def _turn_off(self, error: OSError) -> None:
        self._off = True
        with contextlib.suppress(AttributeError, OSError, ValueError):   # what it still buffers: to os.devnull
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
        why = error.strerror or error
        if any(isinstance(h, _LogFile) for h in logging.getLogger(TRANSCRIPT).handlers):   # a run's log file
            to_log_file(f"warning: {self._name} cannot be written ({why}); the run goes on, its messages in this "
                        f"file only")
        elif self._name == "stdout":   # no log file (a search): said on stderr, once
            print(f"warning: stdout cannot be written ({why}); going on, the results are written to files",
                  file=sys.stderr, flush=True)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def forgiving_console():
    """``sys.stdout`` / ``sys.stderr`` as :class:`ForgivingStream` (a closed one, ``>&-``: os.devnull) for the
    duration; restored afterwards."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = (ForgivingStream(open(os.devnull, "w") if s is None else s, name)   # noqa: SIM115
                              for s, name in zip(saved, ("stdout", "stderr")))
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def log_file_written(path: Path | None) -> bool:
    """Whether ``path``, the log file of :func:`for_command`, still takes what is logged (not after a
    write failed): an error line may send the reader there."""
    return path is not None and not any(isinstance(h, _LogFile) and h.failed and h.baseFilename == os.path.abspath(path)
                                        for h in logging.getLogger().handlers)


def close_log_file() -> None:
    """Close the log file of :func:`for_command` (so that a workdir left empty can be removed)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_zoo_handler", False) and isinstance(h, logging.FileHandler):
            root.removeHandler(h)
            logging.getLogger(TRANSCRIPT).removeHandler(h)
            h.close()


def _thread_exception(args) -> None:
    """An exception that ends a background thread (orbax's save threads after a failed save): to the
    log file, not a traceback on the console; the main thread reports what it means."""
    if issubclass(args.exc_type, SystemExit):
        return
    details(f"thread {getattr(args.thread, 'name', '?')} ended with an exception", args.exc_value)


# ----------------------------------------------------------------------------- known noise

class _Prefixes(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return bool(self.prefixes) and not str(record.msg).startswith(self.prefixes)


@contextlib.contextmanager
def quiet(logger: str, *prefixes: str):
    """Drop the messages of ``logger`` that start with ``prefixes`` (their format string), or all of
    them without ``prefixes``, while inside."""
    f = _Prefixes(prefixes)
    target = logging.getLogger(logger)
    target.addFilter(f)
    try:
        yield
    finally:
        target.removeFilter(f)


_previous_unraisablehook = None


class _OrbaxAsyncioToDetails(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not _from_orbax(record):
            return True
        logging.getLogger(DETAILS).info("%s", record.getMessage())  # INFO: the log file's level, not stderr's
        return False


def ignore_closed_loop_callbacks() -> None:
    """Route ``RuntimeError('Event loop is closed')`` raised in callbacks (tensorstore's, after a read
    that failed) to the log at DEBUG level; every other unraisable exception is reported as before.
    Likewise asyncio's "exception was never retrieved" for orbax's other reads after one failed (logged
    when they are collected, so only in some runs): to the log file, also when no command set up the
    console (``train.load`` from Python). Installed once, by the first Checkpointer."""
    global _previous_unraisablehook
    if _previous_unraisablehook is not None:
        return
    _previous_unraisablehook = sys.unraisablehook
    logging.getLogger("asyncio").addFilter(_OrbaxAsyncioToDetails())

    def hook(unraisable):
        e = unraisable.exc_value
        if isinstance(e, RuntimeError) and str(e) == "Event loop is closed":
            logging.getLogger(DETAILS).debug("a callback after a failed checkpoint read: %s", e)
            return
        _previous_unraisablehook(unraisable)

    sys.unraisablehook = hook
