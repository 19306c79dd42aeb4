"""``python -m train`` whose checkpoint folder fails once two checkpoints are committed: just before
the third save, the fault is applied and the committed files' hashes are written to HASHES.

usage: failing_disk.py FAULT HASHES [python -m train arguments...]

FAULT: ``erofs`` / ``enospc``: orbax's temporary folder cannot be made (OSError injected);
``mount-ro``: the checkpoint folder is bind-mounted read-only; ``mount-full``: it is a tmpfs that is
then shrunk to what it holds (the next save runs out of space). The ``mount-*`` faults need to run
as root of their own namespaces: ``unshare -rm python failing_disk.py ...``.
"""
import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from train import checkpoint
from train.__main__ import main

FAULT, HASHES, ARGV = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
WORKDIR = Path(ARGV[ARGV.index("--workdir") + 1])
CHECKPOINTS = WORKDIR / "checkpoints"
saves = []


def _hashes() -> dict:
    return {str(f.relative_to(CHECKPOINTS)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(CHECKPOINTS.rglob("*")) if f.is_file()}


def _fail():
    if FAULT == "mount-ro":
        subprocess.run(["mount", "--bind", "-o", "ro", CHECKPOINTS, CHECKPOINTS], check=True)
    elif FAULT == "mount-full":
        fs = os.statvfs(CHECKPOINTS)
        used_kib = (fs.f_blocks - fs.f_bfree) * fs.f_frsize // 1024
        subprocess.run(["mount", "-o", f"remount,size={used_kib + 64}k", CHECKPOINTS], check=True)
    else:
        code = {"erofs": errno.EROFS, "enospc": errno.ENOSPC}[FAULT]
        makedirs = os.makedirs

        def failing(path, *args, **kwargs):
            if "orbax-checkpoint-tmp" in str(path):
                raise OSError(code, os.strerror(code), str(path))
            return makedirs(path, *args, **kwargs)

        os.makedirs = failing


original_save = checkpoint.Checkpointer.save


def save(self, step, *args, **kwargs):
    if len(saves) == 2:
        self.wait()
        HASHES.write_text(json.dumps(_hashes()))
        _fail()
    saves.append(step)
    return original_save(self, step, *args, **kwargs)


checkpoint.Checkpointer.save = save
if FAULT == "mount-full":
    CHECKPOINTS.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", CHECKPOINTS], check=True)
sys.exit(main(ARGV))
