"""grain worker processes: what the training process sets up before starting them, and what each
worker runs first (``end_with_parent``). ``train.data.pipeline.load`` calls :func:`prepare` whenever
``data.num_workers > 0``."""
from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from multiprocessing import context, popen_spawn_posix, reduction, spawn, util

WATCH_PARENT_S = 1.0   # how often a worker compares its parent pid


def prepare() -> None:
    """Everything the training process needs before grain starts worker processes (idempotent)."""
    _absl_flags_parsed()
    _resource_tracker_ignoring_hangup()
    _spawn_closing_the_child_ends()


def end_with_parent(worker_index: int, worker_count: int) -> None:
    """grain worker start-up: the worker ends when the process that started it is gone (a SIGKILL of
    the training process once left its workers running, ~200 MB each); a daemon thread compares the
    parent pid once a second. SIGINT / SIGTERM of the training process end them through grain itself;
    a terminal's Ctrl-C or hang-up (sent to the whole process group) is the parent's to handle: workers
    ignore them (each once printed its own KeyboardInterrupt traceback; a hang-up killed them before the
    parent could checkpoint)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_PARENT_S)
        os._exit(0)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


def _absl_flags_parsed() -> None:
    """grain <= 0.2.18 reads an absl flag when it starts worker processes with jax loaded, which
    raises UnparsedFlagAccessError outside an absl app (google/grain#1355, fixed upstream): outside
    an app, mark the flags parsed (defaults). An app that parses its flags later still can."""
    from absl import flags  # noqa: PLC0415

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _resource_tracker_ignoring_hangup() -> None:
    """Start multiprocessing's resource tracker (grain's shared memory registers with it) with SIGHUP
    blocked: it runs in the terminal's process group, and a hang-up killed it while the training
    process checkpointed (its relaunch printed tracebacks). The blocked mask survives its exec; it
    unblocks only SIGINT / SIGTERM, which it ignores. Nothing when it already runs."""
    from multiprocessing import resource_tracker  # noqa: PLC0415

    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


# ------------------------------------------------------------------- starting a worker (CPython 3.11-3.12)
#
# multiprocessing's spawn start method writes the new process's preparation data (grain's pickled
# dataset: megabytes) into a pipe while the parent still holds that pipe's read end, which it closes
# only afterwards. A worker that dies before it has read everything (killed while it imports its
# modules, an OOM kill) therefore never gives the writer EPIPE: the training process blocked for ever
# in Process.start (CPython gh-118981; fixed upstream in 2025 by gh-118982, backported to 3.13 / 3.14:
# close the child's ends right after the spawn). ``_Popen`` is the 3.11 ``popen_spawn_posix.Popen._launch``
# with that fix; a failed write reaps the worker and records its exit (no BrokenPipeError: the CLIs read
# one as a closed stdout), so grain reports the dead worker as it does one that dies later.

class _Popen(popen_spawn_posix.Popen):
    def _launch(self, process_obj):
        from multiprocessing import resource_tracker  # noqa: PLC0415

        tracker_fd = resource_tracker.getfd()
        self._fds.append(tracker_fd)
        prep_data = spawn.get_preparation_data(process_obj._name)
        fp = io.BytesIO()
        context.set_spawning_popen(self)
        try:
            reduction.dump(prep_data, fp)
            reduction.dump(process_obj, fp)
        finally:
            context.set_spawning_popen(None)

        parent_r = child_w = child_r = parent_w = None
        try:
            parent_r, child_w = os.pipe()
            child_r, parent_w = os.pipe()
            cmd = spawn.get_command_line(tracker_fd=tracker_fd, pipe_handle=child_r)
            self._fds.extend([child_r, child_w])
            self.pid = util.spawnv_passfds(spawn.get_executable(), cmd, self._fds)
            self.sentinel = parent_r
            os.close(child_r)   # the fix: the child holds its own copies now
            os.close(child_w)
            child_r = child_w = None
            try:
                with open(parent_w, "wb", closefd=False) as f:
                    f.write(fp.getbuffer())
            except BrokenPipeError:
                self.returncode = _reap(self.pid)
        finally:
            fds_to_close = [fd for fd in (parent_r, parent_w) if fd is not None]
            self.finalizer = util.Finalize(self, util.close_fds, fds_to_close)
            for fd in (child_r, child_w):
                if fd is not None:
                    os.close(fd)


def _reap(pid: int) -> int:
    """The exit code (-signal when killed) of a worker that stopped reading its start-up data, which
    Process.exitcode then reports: grain raises "Worker process was terminated unexpectedly" as for a
    worker that dies later (an exit 0 counts as 1: the worker never ran)."""
    try:
        os.kill(pid, signal.SIGKILL)   # it may still run with its end of the pipe closed
    except ProcessLookupError:
        pass
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return 1
    return os.waitstatus_to_exitcode(status) or 1


def _spawn_closing_the_child_ends() -> None:
    """Start processes of the spawn context (grain's) with :class:`_Popen` where CPython lacks the fix."""
    if sys.platform != "win32" and sys.version_info[:2] in ((3, 11), (3, 12)):
        context.SpawnProcess._Popen = staticmethod(_Popen)



class InputWatch:
    """Says once, through ``say``, when the next batch has been awaited for ``WAIT_S`` seconds (a stopped
    or stuck data worker froze the progress display without a word), and when it comes after all. A
    daemon thread looks once a second; ``next(it)`` costs two assignments."""

    WAIT_S = 60.0

    def __init__(self, say):
        self._say, self._since, self._said = say, None, False
        self._stop = threading.Event()
        threading.Thread(target=self._watch, name="input-watch", daemon=True).start()

    def next(self, iterator, *default):
        """``next(iterator, *default)``, watched."""
        self._since = time.monotonic()
        try:
            return next(iterator, *default)
        finally:
            waited, self._since = time.monotonic() - self._since, None
            if self._said:
                self._said = False
                self._say(f"input data came after {waited:.0f} s")

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.WAIT_S)):
            since = self._since
            if since is not None and not self._said and time.monotonic() - since >= self.WAIT_S:
                self._said = True
                self._say(f"no input batch for {self.WAIT_S:.0f} s: is a data worker process stopped or stuck "
                          f"(data.num_workers)? still waiting")

    def close(self) -> None:
        self._stop.set()
