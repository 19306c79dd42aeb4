"""Host memory of XLA:CPU programs: large blocks in transparent huge pages.

XLA:CPU gives each execution of a program one temporary buffer that holds all of its intermediate
arrays (MobileNet-V2's train step at batch 16, 224x224: 2.39 GB), ``malloc``-ed when the step starts
and freed when it ends. glibc serves allocations above 32 MB with ``mmap`` and returns them with
``munmap`` at once, so every step maps its temporary buffer afresh and the kernel faults in and
zeroes it page by page: 585k page faults of 4 KiB and ~1.0 s of system time per MobileNet-V2 step,
half of the step's CPU time (benchmarks/README.md, "Round 9"). glibc's tunable
``glibc.malloc.hugetlb=1`` (glibc >= 2.35) has it ``madvise`` such blocks for transparent huge pages:
one fault per 2 MiB instead of 512, and the step runs 1.2-1.8x faster on CPU, with the same memory.

A tunable is read when the process starts, from ``GLIBC_TUNABLES``. So the command lines that run
steps (``python -m train``, ``python -m train.search``, ``benchmarks/profile_step.py``) start again
at once, before anything heavy is imported, with it added (:func:`restart_with_huge_pages`: same
process id, arguments, input and output), and ``benchmarks/bench.py`` starts its workers with it
(:func:`environment`). Other programs can be started with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``
themselves. It applies on Linux with glibc where transparent huge pages are not turned off
(``/sys/kernel/mm/transparent_hugepage/enabled``: ``always`` or ``madvise``);
``ZOO_HOST_MEMORY=system`` leaves the allocator as it is.

Tried and not kept: ``mallopt`` at run time (one heap, no ``mmap``, never trimmed): as fast once
warm, but the heap fragments between steps and DenseNet-121's process grew from 4.2 to 15.8 GB.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

ENV = "ZOO_HOST_MEMORY"          # 'hugepages' (default) | 'system'
CHOICES = ("hugepages", "system")
TUNABLE = "glibc.malloc.hugetlb"
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def setting(env=None) -> str:
    """``ZOO_HOST_MEMORY`` of ``env`` (default ``os.environ``; ``hugepages`` when unset); anything
    else is an error naming the variable and what it allows."""
    env = os.environ if env is None else env
    value = env.get(ENV, "").strip().lower() or "hugepages"
    if value not in CHOICES:
        raise ValueError(f"{ENV}={env[ENV]!r}: expected one of {', '.join(CHOICES)}")
    return value


def applies(env=None) -> bool:
    """Whether huge pages are wanted and can be had here: the setting, Linux with glibc, and
    transparent huge pages not ``[never]``."""
    if setting(env) != "hugepages" or not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        return "[never]" not in THP_SETTING.read_text()
    except OSError:
        return False


def _tunables(env) -> list[str]:
    return [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t]


def in_effect(env=None) -> bool:
    """Whether ``env`` (default: this process's, as it started) sets ``glibc.malloc.hugetlb``."""
    env = os.environ if env is None else env
    return any(t.split("=")[0] == TUNABLE for t in _tunables(env))


def environment(env=None) -> dict:
    """A copy of ``env`` (default ``os.environ``) that starts a process with huge pages for large
    blocks where :func:`applies`; a ``glibc.malloc.hugetlb`` already set (a user's choice) is kept."""
    env = dict(os.environ if env is None else env)
    if applies(env) and not in_effect(env):
        env["GLIBC_TUNABLES"] = ":".join([*_tunables(env), f"{TUNABLE}=1"])
    return env


def restart_with_huge_pages() -> None:
    """Replace this process by the same command line with :func:`environment` when that differs
    from the environment it started with (once: the restarted process has it). Only for a
    command line's entry point, before anything heavy is imported; a bad ``ZOO_HOST_MEMORY`` raises
    ``ValueError``."""
    env = environment()
    if env.get("GLIBC_TUNABLES") != os.environ.get("GLIBC_TUNABLES"):
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
        except OSError as e:   # the interpreter cannot be started again: run on, with glibc's default
            print(f"note: not restarted with {TUNABLE}=1 ({e}); {ENV}=system silences this", file=sys.stderr)


def start_command_line(argv) -> int | None:
    """What a command line's ``main(argv)`` calls first: when ``argv`` is None (the command line
    itself, not a call from Python, whose process is never replaced) :func:`restart_with_huge_pages`;
    a bad ``ZOO_HOST_MEMORY`` is one error line, and its exit status is returned (else None)."""
    if argv is None:
        try:
            restart_with_huge_pages()
        except ValueError as e:
            from zoo import cli  # noqa: PLC0415  (heavy: only for the error)

            return cli.fail(e)
    return None
