"""What the command lines share (``python -m train``, ``train.evaluate`` and its ``--pretrained``,
``train.inspect``, ``train.transfer``, ``zoo``, ``zoo.convert``, ``zoo.predict``, ``zoo.export``): an
argument parser whose ``--help`` exits 0 with the usage, the module's description, the options and an
epilog (examples, the commonest fields, where the full list is), and whose errors are one line; and
the one ``error:`` line every command ends with when it fails.

    p = cli.parser("python -m zoo.convert", __doc__, epilog="examples: ...")
    args = p.parse_args(argv)           # a bad argument: "error: ..." on stderr, exit status 2
    return cli.fail(e)                  # "error: <e>" on stderr; returns the exit status, 2
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

USAGE_ERROR = 2


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line: ``error: <what> (<prog> --help)``."""

    def error(self, message: str):
        self.exit(USAGE_ERROR, f"error: {message} (see: {self.prog} --help)\n")


def parser(prog: str, doc: str | None, *, epilog: str | None = None) -> Parser:
    """A :class:`Parser` for ``prog`` described by the first paragraph of ``doc`` (the module
    docstring), with ``epilog`` after the options, both shown as written."""
    description = (doc or "").strip().split("\n\n")[0]
    return Parser(prog=prog, description=description, epilog=epilog,
                  formatter_class=argparse.RawDescriptionHelpFormatter)


def fail(error: BaseException | str, *, status: int = USAGE_ERROR) -> int:
    """Print ``error: <error>`` on stderr; returns ``status``, for the command to exit with. Called for
    an error of stdout itself (``error``, or the exception being handled, is the one :func:`run`'s stdout
    raised: the command's own ``except OSError`` caught it): a closed pipe ends quietly with 141, a full
    stdout says so with status 1, as :func:`run` does when the error reaches it."""
    handled = error if isinstance(error, BaseException) else sys.exc_info()[1]
    if _watched is not None and isinstance(handled, OSError) and handled is _watched.failed:
        _stdout_to_devnull()
        if isinstance(handled, BrokenPipeError):
            return 128 + signal.SIGPIPE
        error, status = f"cannot write to standard output: {handled.strerror or handled}", 1
    print(f"error: {error}", file=sys.stderr, flush=True)
    return status


def run(main, argv=None) -> int:
    """A command's ``main(argv)``, as its ``__main__`` runs it: Ctrl-C is one line and status 130 (a
    KeyboardInterrupt traceback of 9-38 frames before), and a reader that went away (``| head -1``)
    ends it quietly with 141, as a SIGPIPE would: stdout then points at os.devnull, as Python's
    documentation of SIGPIPE advises, so that the exit's flush does not fail again. What it printed is
    flushed before it returns: a stdout that cannot take it (``> /dev/full``) is one error line and
    status 1 (an OSError traceback at the interpreter's exit before)."""
    global _watched
    out = _watched = sys.stdout = _Watched(sys.stdout) if sys.stdout is not None else None
    try:
        status = main(argv)
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        return fail("interrupted (SIGINT): stopped; what was already written is whole", status=128 + signal.SIGINT)
    except BrokenPipeError:
        _stdout_to_devnull()
        return 128 + signal.SIGPIPE
    except OSError as e:
        if out is None or out.failed is not e:   # the command's own files: its error, as it was
            raise
        _stdout_to_devnull()
        return fail(f"cannot write to standard output: {e.strerror or e}", status=1)
    finally:
        _watched = None
        if out is not None and sys.stdout is out:
            sys.stdout = out.stream


_watched = None   # run's stdout while it runs


class _Watched:
    """stdout, keeping the error of a write that failed: a full stdout told from the command's files."""

    def __init__(self, stream):
        self.stream, self.failed = stream, None

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except OSError as e:
            self.failed = e
            raise

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as e:
            self.failed = e
            raise

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def _stdout_to_devnull() -> None:
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):   # no real stdout (a test's capture): nothing to flush
        pass


def keep_existing(path, argument: str, overwrite: bool) -> None:
    """FileExistsError unless ``path`` is new or ``overwrite`` (``--overwrite``) was given: a command
    never replaces a user's file silently. ``argument`` names the path's argument (``--out``, ``dst``)."""
    if not overwrite and Path(path).expanduser().exists():
        raise FileExistsError(f"{path} exists; choose another {argument} or pass --overwrite to replace it")
