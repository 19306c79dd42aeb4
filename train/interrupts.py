"""Ctrl-C (SIGINT), SIGTERM and SIGHUP (a terminal or ssh session closed), handled at safe points,
never in the middle of a compilation.

Python's default SIGINT handler raises ``KeyboardInterrupt`` wherever the main thread happens to be,
inside XLA's compilation of the initial state or the step too, and tearing down the interpreter
while XLA's threads still run can crash it. Here a signal only sets a flag:

* during start-up (building the run, restoring or initialising the state, compiling the first
  step), :meth:`Stop.check` raises :class:`Interrupted` at the next safe point: nothing was saved,
  the command exits with 128 + the signal number (130 for Ctrl-C) and one line;
* during training, ``fit`` checkpoints at the next step boundary and returns;
* a second signal stops the process at once (one line, exit 130 / 143): the checkpoints already
  committed are complete (orbax commits atomically), the one being written, if any, is not used.

The command lines :func:`install` the handler for the whole process, before anything heavy is
imported (an interrupt during interpreter shutdown must not print a traceback either); ``fit``
called from Python installs it for its own duration (:func:`stop_signals`).
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)   # SIGHUP once ended a run like a kill, unsaved


class Interrupted(KeyboardInterrupt):
    """Stopped by a signal during start-up; nothing was saved."""

    def __init__(self, signal_name: str):
        super().__init__(f"{signal_name} received during start-up: stopped before training, nothing was saved")
        self.signal_name = signal_name

    @property
    def exit_code(self) -> int:
        return exit_status(self.signal_name)


def exit_status(signal_name: str) -> int:
    """What a shell reports for a process ended by ``signal_name``: 128 + its number (SIGINT 130,
    SIGTERM 143). A run stopped by a signal, its checkpoint saved, exits with it too: a script or a
    scheduler tells it from a finished run (0)."""
    return 128 + int(signal.Signals[signal_name])


class Stop:
    """The flag a signal sets: ``signal`` is the first signal's name (None: none received)."""

    def __init__(self):
        self.signal: str | None = None

    def handler(self, signum, _frame) -> None:
        name = signal.Signals(signum).name
        if self.signal is None:
            self.signal = name
            return
        os.write(2, f"\n{name} received again: stopping now; the checkpoints already committed are kept\n".encode())
        os._exit(128 + signum)

    def check(self) -> None:
        """Raise :class:`Interrupted` if a signal arrived (call at start-up's safe points)."""
        if self.signal is not None:
            raise Interrupted(self.signal)


_process_stop: Stop | None = None


def install() -> Stop:
    """Handle SIGINT, SIGTERM and SIGHUP with one :class:`Stop` for the rest of the process (command lines)."""
    global _process_stop
    if _process_stop is None:
        _process_stop = Stop()
        for s in SIGNALS:
            signal.signal(s, _process_stop.handler)
    return _process_stop


def uninstall() -> None:
    """Back to Python's default handlers (a multi-host run: its processes must stop together)."""
    global _process_stop
    if _process_stop is not None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        _process_stop = None


@contextlib.contextmanager
def stop_signals():
    """The :class:`Stop` to consult: the process's (:func:`install`), else one installed for the
    duration of the block (main thread only; elsewhere, or with several JAX processes, a flag that no
    signal sets: a signal then acts as it would without us)."""
    if _process_stop is not None:
        yield _process_stop
        return
    import jax  # noqa: PLC0415

    stop = Stop()
    if jax.process_count() > 1 or threading.current_thread() is not threading.main_thread():
        yield stop
        return
    old = {s: signal.signal(s, stop.handler) for s in SIGNALS}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def finish(code: int, *, grace_s: float = 10.0) -> int:
    """``code``, once the threads that would keep the interpreter from exiting are done; a command's
    last call. One still running after ``grace_s`` seconds (orbax's, after a failed save, wait 20
    minutes for each other) is not waited for: the process exits with ``code`` at once."""
    import gc  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import time  # noqa: PLC0415

    gc.collect()  # what only a reference cycle kept (an exception's traceback) lets its threads end
    deadline = time.monotonic() + grace_s
    for t in threading.enumerate():
        if t is not threading.current_thread() and not t.daemon:
            t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.current_thread()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
