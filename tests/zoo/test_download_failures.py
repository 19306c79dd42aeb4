"""What a failed download says and leaves (zoo.weights.download): every failure ends with how to get
the file without the download, a mirror's failure names the mirror, a page served in place of the
file is called one, a transfer that trickles fails instead of hanging, a temporary file left by a
killed process is removed by the next fetch, and a cache folder that cannot hold the file is named."""
import hashlib
import itertools
import os

import pytest

from helpers import file_server
from zoo.weights import catalogue, download
from zoo.weights.catalogue import WeightEntry

BODY = os.urandom(200_000)
SHA = hashlib.sha256(BODY).hexdigest()


def entry(url, sha256=SHA):
    return WeightEntry(model="resnet18", tag="T", url=url, sha256=sha256, categories=1000, published=False)


def leftovers(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_an_http_error_says_how_to_get_the_file_and_names_the_mirror(tmp_path, monkeypatch):
    with file_server({}) as s:
        with pytest.raises(download.DownloadError) as e:
            download.fetch(entry(f"{s.url}/w.pth"), cache_dir=tmp_path, progress=False)
        final = tmp_path / "weights" / f"w-{SHA[:8]}.pth"
        assert str(e.value).startswith(f"cannot download {s.url}/w.pth: HTTP 404 Not Found; without network, "
                                       f"fetch that file elsewhere and put it at {final}")
        # a user's entry keeps its own URL: the mirror, which holds torchvision's files only, is not offered
        assert download.MIRROR_ENV not in str(e.value) and "\n" not in str(e.value)

        tv = entry(catalogue.TORCHVISION_BASE + "tv-00000000.pth", sha256="00000000")
        monkeypatch.setenv(download.MIRROR_ENV, s.url)
        with pytest.raises(download.DownloadError) as e:
            download.fetch(tv, cache_dir=tmp_path, progress=False)
    assert str(e.value).startswith(f"cannot download {s.url}/tv-00000000.pth: HTTP 404 Not Found "
                                   f"(${download.MIRROR_ENV}; the file's own URL is {tv.url}); without network")
    assert str(e.value).endswith(f"put it at {tmp_path / 'weights' / 'tv-00000000.pth'} "
                                 f"(or in a directory named by ${download.MIRROR_ENV})")
    assert leftovers(tmp_path) == []


def test_a_hash_mismatch_says_where_to_put_the_right_file(tmp_path):
    with file_server({"w.pth": b"not the weights"}) as s:
        with pytest.raises(download.HashMismatchError) as e:
            download.fetch(entry(f"{s.url}/w.pth"), cache_dir=tmp_path, progress=False)
    assert str(e.value).endswith(f"nothing was kept in the cache; fetch the file with that hash elsewhere and put it "
                                 f"at {tmp_path / 'weights' / f'w-{SHA[:8]}.pth'}")
    assert leftovers(tmp_path) == []


def test_a_url_with_a_query_is_cached_under_its_paths_file_name(tmp_path):
    """As torch.hub (the name from the URL's path): 'w.pth?download=1' was cached under that name, and
    its suffix '.pth?download=1' refused by the reader at every later load."""
    with file_server({"w.pth?download=1": BODY}) as s:
        path = download.fetch(entry(f"{s.url}/w.pth?download=1#part"), cache_dir=tmp_path, progress=False)
    assert path == tmp_path / "weights" / f"w-{SHA[:8]}.pth" and path.read_bytes() == BODY


def test_a_page_served_in_place_of_the_file_is_called_one(tmp_path):
    page = b"<html><body>Please log in</body></html>"
    with file_server({"w.pth": page}, types={"w.pth": "text/html; charset=utf-8"}) as s:
        with pytest.raises(download.HashMismatchError) as e:
            download.fetch(entry(f"{s.url}/w.pth"), cache_dir=tmp_path, progress=False)
    assert f"over {len(page)} bytes; a text/html page, not the weight file" in str(e.value)
    assert leftovers(tmp_path) == []


def test_a_transfer_that_trickles_fails_instead_of_hanging(tmp_path, monkeypatch):
    """A byte now and then keeps every socket read inside its timeout: the stall rule (fewer than
    STALL_BYTES in STALL_S) ends it. The clock advances 10 s per reading of it."""
    clock = itertools.count(0.0, 10.0)
    monkeypatch.setattr(download.time, "monotonic", lambda: next(clock))

    class Trickle:
        reads = 0

        def read1(self, n):   # what has arrived: one byte
            self.reads += 1
            assert self.reads < 100, "the stall rule never fired"
            return b"x"

    final = tmp_path / "weights" / "w.pth"
    final.parent.mkdir(parents=True)
    with pytest.raises(download.DownloadError, match=r"stalled: \d bytes in the last 60 s"):
        download._transfer(Trickle(), None, None, "http://127.0.0.1/w.pth", entry("http://127.0.0.1/w.pth"),
                           final, False)
    assert leftovers(tmp_path) == []


def test_a_temporary_file_of_a_killed_download_is_removed_by_the_next_fetch(tmp_path):
    e = entry("http://127.0.0.1/w.pth")
    final = download.cached_path(e, tmp_path)
    final.parent.mkdir(parents=True)
    stale, live = final.parent / f".{final.name}.abc123.part", final.parent / f".{final.name}.def456.part"
    other = final.parent / ".other.pth.abc123.part"   # another file's: not this fetch's to judge
    for p in (stale, live, other):
        p.write_bytes(b"half")
    old = os.stat(stale).st_mtime - 2 * 3600
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    with file_server({"w.pth": BODY}) as s:
        download.fetch(entry(f"{s.url}/w.pth"), cache_dir=tmp_path, progress=False)
    assert not stale.exists() and live.exists() and other.exists()   # a young one may be another process's
    assert final.read_bytes() == BODY


def test_a_cache_folder_that_cannot_hold_the_file_is_named(tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    e = entry("http://127.0.0.1:9/w.pth")
    with pytest.raises(download.CacheError) as err:
        download.fetch(e, cache_dir=afile, progress=False)
    assert str(err.value) == (f"weights cache {afile} (cache_dir=): {afile} is a file, not a folder; "
                              f"set ${download.CACHE_ENV} or cache_dir= to a writable folder")
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "c"))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "weights").write_text("")
    with pytest.raises(download.CacheError, match=r"\(\$ZOO_CACHE\): .*weights is a file, not a folder"):
        download.fetch(e, progress=False)
    assert afile.read_text() == "not a folder"


def test_cache_dir_must_be_a_path(tmp_path):
    with pytest.raises(ValueError, match=r"^cache_dir=5: a folder path \(str or pathlib.Path\)"):
        download.cache_root(5)


def test_a_cache_that_fills_during_the_download_is_named(tmp_path, monkeypatch):
    """A full disk mid-download was a bare ``OSError: [Errno 28]``, naming neither the cache nor how to
    choose another; nothing is left behind."""
    import errno

    real = os.fdopen

    class Full:   # the temporary file, on a disk that fills at the first block
        def __init__(self, f):
            self.f = f

        def write(self, block):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(download.os, "fdopen", lambda fd, mode: Full(real(fd, mode)))
    with file_server({"w.pth": BODY}) as s:
        with pytest.raises(download.CacheError) as err:
            download.fetch(entry(f"{s.url}/w.pth"), cache_dir=tmp_path, progress=False)
    assert str(err.value) == (f"weights cache folder {tmp_path / 'weights'} cannot be written ([Errno 28] No space "
                              f"left on device); set ${download.CACHE_ENV} or cache_dir= to a writable folder")
    assert leftovers(tmp_path) == []
