"""Files written so that nobody ever sees half of one: the content goes to a temporary file beside the
destination, which replaces the destination (``os.replace``: atomic) only once it is complete. A
destination that existed stays whole until then; a failed write leaves no temporary file."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def written_atomically(path: Path):
    """Yield a temporary path beside ``path`` to write; on success it becomes ``path`` (mode 0644, not
    mkstemp's 0600, so a shared cache stays readable), on any exception it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
