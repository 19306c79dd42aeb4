"""zoo.files.written_atomically: the destination is replaced only by a complete file (mode 0644), and a
failed write leaves the old file whole and no temporary file behind."""
import re
from pathlib import Path

import pytest

from zoo import files
from zoo.files import written_atomically


def test_a_complete_write_replaces_the_file_readable_by_others(tmp_path):
    path = tmp_path / "sub" / "w.bin"
    with written_atomically(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"new")
    assert path.read_bytes() == b"new" and path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["w.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"the user's file")
    with pytest.raises(OSError, match="disk full"):
        with written_atomically(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise OSError("disk full")
    assert path.read_bytes() == b"the user's file" and [p.name for p in tmp_path.iterdir()] == ["w.bin"]


def test_a_destination_that_cannot_be_written_is_named_not_its_hidden_temporary_file(tmp_path, monkeypatch):
    """Once: "[Errno 2] No such file or directory: '/proc/.x.safetensors.jqywmdyn.part'"."""
    path = tmp_path / "x.safetensors"

    def refused(*args, dir=None, prefix="", suffix=""):
        raise PermissionError(13, "Permission denied", f"{dir}/{prefix}abc{suffix}")

    monkeypatch.setattr(files.tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError, match=rf"^cannot write {re.escape(str(path))}: Permission denied$") as e:
        with written_atomically(path):
            pass
    assert e.value.errno == 13
    monkeypatch.undo()
    with pytest.raises(OSError, match=rf"^cannot write {re.escape(str(path))}: "):   # the temporary file's rename fails
        with written_atomically(path) as tmp:
            (tmp_path / "x.safetensors").mkdir()
            Path(tmp).write_bytes(b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["x.safetensors"]


def test_a_figure_is_saved_whole_or_not_at_all(tmp_path):
    """savefig wrote onto the final name: a full disk or a kill mid-write left a truncated PNG where the
    last good one was (search figures, inspect pictures, confusion matrices)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    class FullDisk:
        def savefig(self, f, **kwargs):
            Path(f).write_bytes(b"\x89PNG partial")
            raise OSError(28, "No space left on device")

    old = tmp_path / "layout.png"
    old.write_bytes(b"the last good picture")
    with pytest.raises(OSError, match="No space left"):
        files.save_figure(FullDisk(), old, dpi=100)
    assert old.read_bytes() == b"the last good picture" and sorted(tmp_path.iterdir()) == [old]
    fig = plt.figure(figsize=(1, 1))
    try:
        assert files.save_figure(fig, old, dpi=50).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"   # PNG's signature
        assert files.save_figure(fig, tmp_path / "f.pdf").read_bytes()[:5] == b"%PDF-"         # by the suffix
    finally:
        plt.close(fig)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pdf", "layout.png"]
