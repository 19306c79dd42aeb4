"""Which read errors mean a damaged checkpoint (set aside by a reader) and which the machine's state
(raised, nothing moved): train/checkpoint_errors.py."""
import errno

import pytest

from train.checkpoint import CorruptCheckpointError
from train.checkpoint_errors import cause, is_damage


@pytest.mark.parametrize("error", [
    CorruptCheckpointError("content checksum mismatch in params/fc1/kernel"),
    ValueError("DATA_LOSS: Truncated Zstd-compressed stream"),     # tensorstore on a truncated file
    FileNotFoundError(errno.ENOENT, "No such file or directory"),  # a part of the checkpoint missing
    KeyError("params"),
])
def test_damage(error):
    assert is_damage(error)


@pytest.mark.parametrize("error", [
    MemoryError(), ImportError("tensorstore"), PermissionError(errno.EACCES, "Permission denied"),
    OSError(errno.EMFILE, "Too many open files"), OSError(errno.EIO, "Input/output error"),
    ValueError("PERMISSION_DENIED: open failed"), ValueError("RESOURCE_EXHAUSTED: out of memory"),
])
def test_the_machines_state_is_not_damage(error):
    assert not is_damage(error)


def test_cause_is_one_short_line():
    assert cause(ValueError("first\nsecond")) == "ValueError: first"
    assert cause(MemoryError()) == "MemoryError: " and len(cause(ValueError("x" * 500))) == len("ValueError: ") + 200
