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
    """Print ``error: <error>`` on stderr; returns ``status``, for the command to exit with."""
    print(f"error: {error}", file=sys.stderr, flush=True)
    return status


def run(main, argv=None) -> int:
    """A command's ``main(argv)``, as its ``__main__`` runs it: Ctrl-C is one line and status 130 (a
    KeyboardInterrupt traceback of 9-38 frames before), and a reader that went away (``| head -1``)
    ends it quietly with 141, as a SIGPIPE would: stdout then points at os.devnull, as Python's
    documentation of SIGPIPE advises, so that the exit's flush does not fail again."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        return fail("interrupted (SIGINT): stopped; what was already written is whole", status=128 + signal.SIGINT)
    except BrokenPipeError:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (AttributeError, OSError, ValueError):   # no real stdout (a test's capture): nothing to flush
            pass
        return 128 + signal.SIGPIPE


def keep_existing(path, argument: str, overwrite: bool) -> None:
    """FileExistsError unless ``path`` is new or ``overwrite`` (``--overwrite``) was given: a command
    never replaces a user's file silently. ``argument`` names the path's argument (``--out``, ``dst``)."""
    if not overwrite and Path(path).expanduser().exists():
        raise FileExistsError(f"{path} exists; choose another {argument} or pass --overwrite to replace it")
