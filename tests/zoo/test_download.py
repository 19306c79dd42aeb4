"""Checked downloads into the cache (zoo.weights.download), all from a local HTTP server on 127.0.0.1 or
a local directory: progress, the sha256 check (full hash and torchvision's file-name prefix), reuse of
the cache with the server stopped, nothing left behind by a wrong hash, a truncated or interrupted
transfer, the mirror variable, the message without network, two processes at once."""
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from helpers import ROOT, child_env, file_server
from zoo.weights import catalogue, download
from zoo.weights.catalogue import WeightEntry

BODY = os.urandom(3 * download.CHUNK + 12345)
SHA = hashlib.sha256(BODY).hexdigest()
NAME = f"w-{SHA[:8]}.pth"  # torchvision's naming: the hash prefix in the file name


def entry(url, sha256=SHA, tag="T"):
    return WeightEntry(model="resnet18", tag=tag, url=url, sha256=sha256, categories=1000, published=False)


def leftovers(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def server():
    with file_server({NAME: BODY, "cut.pth": BODY}, truncated=("cut.pth",)) as s:
        yield s


def test_download_with_progress_then_the_cache_without_the_server(tmp_path, capsys):
    with file_server({"w.pth": BODY}) as s:
        e = entry(f"{s.url}/w.pth")
        path = download.fetch(e, cache_dir=tmp_path, progress=True)
        assert s.requests == ["w.pth"]
    cached = f"w-{SHA[:8]}.pth"                       # a name without the hash gets its first 8 digits
    assert path == tmp_path / "weights" / cached and path.read_bytes() == BODY
    err = capsys.readouterr().err
    assert "w.pth" in err and "100%" in err          # tqdm's bar on stderr
    assert leftovers(tmp_path) == [f"weights/{cached}"]  # no temporary file
    assert download.fetch(e, cache_dir=tmp_path, progress=False) == path  # server gone: the cached, checked file
    assert capsys.readouterr().err == ""


def test_torchvisions_file_name_prefix_is_a_hash_check(tmp_path, server):
    download.fetch(entry(f"{server.url}/{NAME}", sha256=SHA[:8]), cache_dir=tmp_path, progress=False)
    assert leftovers(tmp_path) == [f"weights/{NAME}"]


@pytest.mark.parametrize("expected", ["0" * 64, "deadbeef"])
def test_a_wrong_hash_is_refused_and_nothing_is_kept(tmp_path, server, expected):
    url = f"{server.url}/{NAME}"
    with pytest.raises(download.HashMismatchError) as e:
        download.fetch(entry(url, sha256=expected), cache_dir=tmp_path, progress=False)
    assert str(e.value) == (f"sha256 mismatch for {url}: expected {expected}, got {SHA} over {len(BODY):,} bytes; "
                            f"nothing was kept in the cache; fetch the file with that hash elsewhere and put it at "
                            f"{download.cached_path(entry(url, sha256=expected), tmp_path)}")
    assert leftovers(tmp_path) == []


def test_an_http_error_is_named(tmp_path, server):
    with pytest.raises(download.DownloadError, match=r"cannot download .*/missing\.pth: HTTP 404 Not Found"):
        download.fetch(entry(f"{server.url}/missing.pth"), cache_dir=tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def test_entries_with_the_same_file_name_do_not_share_a_cached_file(tmp_path):
    a = entry("https://a.example.com/v1/model.pth", sha256="a" * 64)
    b = entry("https://a.example.com/v2/model.pth", sha256="b" * 64)
    assert download.cached_path(a, tmp_path).name == "model-aaaaaaaa.pth"
    assert download.cached_path(b, tmp_path).name == "model-bbbbbbbb.pth"
    tv = catalogue.entry("resnet18")
    assert download.cached_path(tv, tmp_path).name == "resnet18-f37072fd.pth"  # torch hub's own name


def test_a_truncated_download_leaves_nothing(tmp_path, server):
    with pytest.raises(download.DownloadError, match=r"cut\.pth (is truncated|failed after)"):
        download.fetch(entry(f"{server.url}/cut.pth"), cache_dir=tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def test_an_interrupted_download_leaves_nothing(tmp_path):
    class Stream:
        calls = 0

        def read(self, n):
            self.calls += 1
            if self.calls > 2:
                raise KeyboardInterrupt
            return b"x" * n

    final = tmp_path / "weights" / "w.pth"
    final.parent.mkdir(parents=True)
    with pytest.raises(KeyboardInterrupt):
        download._transfer(Stream(), None, None, "http://127.0.0.1/w.pth", entry("http://127.0.0.1/w.pth"), final, False)
    assert leftovers(tmp_path) == []


def test_without_network_the_error_says_which_file_to_fetch_and_where(tmp_path):
    with socket.socket() as s:  # a port nobody listens on: connection refused, as offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/resnet18-f37072fd.pth"
    with pytest.raises(download.DownloadError) as e:
        download.fetch(entry(url, sha256="f37072fd"), cache_dir=tmp_path, progress=False)
    msg = str(e.value)
    assert msg.startswith(f"cannot download {url} (") and "\n" not in msg
    assert msg.endswith(f"put it at {tmp_path / 'weights' / 'resnet18-f37072fd.pth'}")   # a user's URL: no mirror
    assert leftovers(tmp_path) == []


def test_a_damaged_cached_file_is_reported_not_used_and_kept(tmp_path, server):
    e = entry(f"{server.url}/{NAME}")
    path = download.fetch(e, cache_dir=tmp_path, progress=False)
    path.write_bytes(BODY[:-1] + b"!")
    with pytest.raises(download.HashMismatchError, match="cached file has sha256 .* delete it to download"):
        download.fetch(e, cache_dir=tmp_path, progress=False)
    assert path.exists()  # a file someone put there is never deleted behind their back


def test_the_mirror_replaces_torchvisions_location(tmp_path, server, monkeypatch):
    tv = entry(catalogue.TORCHVISION_BASE + NAME)
    monkeypatch.setenv(download.MIRROR_ENV, server.url + "/")
    assert download.source(tv) == f"{server.url}/{NAME}"
    assert download.fetch(tv, cache_dir=tmp_path / "a", progress=False).read_bytes() == BODY
    assert server.requests == [NAME]
    own = entry("https://models.example.com/w.pth")
    assert download.source(own) == own.url  # a user's own entry keeps its URL
    mirror = tmp_path / "mirror"            # a local directory
    mirror.mkdir()
    (mirror / NAME).write_bytes(BODY)
    monkeypatch.setenv(download.MIRROR_ENV, str(mirror))
    path = download.fetch(tv, cache_dir=tmp_path / "b", progress=False)
    assert path.read_bytes() == BODY and server.requests == [NAME]
    missing = entry(catalogue.TORCHVISION_BASE + "other-00000000.pth", sha256="00000000")
    with pytest.raises(download.DownloadError, match=f"other-00000000.pth is not in the mirror directory {mirror}"):
        download.fetch(missing, cache_dir=tmp_path / "c", progress=False)
    (mirror / NAME).write_bytes(BODY[:-1] + b"!")   # a damaged mirror copy: refused, and left where it is
    with pytest.raises(download.HashMismatchError, match=r"; nothing was kept in the cache; fetch the file with that "
                                                         r"hash elsewhere and put it at .*\$ZOO_WEIGHTS_MIRROR\)$"):
        download.fetch(tv, cache_dir=tmp_path / "d", progress=False)
    assert (mirror / NAME).read_bytes() == BODY[:-1] + b"!" and not any((tmp_path / "d").rglob("*.pth"))


def test_the_cache_location(tmp_path, monkeypatch):
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "env"))
    assert download.cache_root() == tmp_path / "env"
    assert download.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(download.CACHE_ENV)
    assert str(download.cache_root()).endswith(os.path.join(".cache", "cnn-zoo"))


FETCH = """
import json, sys
from zoo.weights import download
from zoo.weights.catalogue import WeightEntry
e = WeightEntry(model="resnet18", tag="T", url=sys.argv[1], sha256=sys.argv[2], categories=1000, published=False)
print(json.dumps(str(download.fetch(e, cache_dir=sys.argv[3], progress=False))))
"""


@pytest.mark.integration
def test_two_processes_downloading_the_same_file_at_once(tmp_path):
    big = os.urandom(24 * download.CHUNK)
    sha = hashlib.sha256(big).hexdigest()
    barrier = threading.Barrier(2, timeout=60)  # each response starts only when both requests are in
    with file_server({"big.pth": big}, barrier=barrier) as s:
        procs = [subprocess.Popen([sys.executable, "-c", FETCH, f"{s.url}/big.pth", sha, str(tmp_path)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=child_env())
                 for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        assert len(s.requests) == 2
    assert [p.returncode for p in procs] == [0, 0], outs
    cached = tmp_path / "weights" / f"big-{sha[:8]}.pth"
    assert {json.loads(o.strip().splitlines()[-1]) for o, _ in outs} == {str(cached)}
    assert cached.read_bytes() == big
    assert leftovers(tmp_path) == [f"weights/{cached.name}"]
