"""Weight files into the cache, checked: ``fetch(entry) -> Path`` of a file whose sha256 matches.

* Cache: ``cache_dir`` argument, else ``$ZOO_CACHE``, else ``~/.cache/cnn-zoo``; files in
  ``<cache>/weights/<file name>`` (torchvision's names, which carry the hash: files from
  ``~/.cache/torch/hub/checkpoints`` can be copied in; other names get the hash's first 8 digits),
  converted variables in ``<cache>/converted/``.
* Source: the entry's URL (``urllib``, standard library). ``$ZOO_WEIGHTS_MIRROR`` replaces
  torchvision's download location (``https://download.pytorch.org/models/``): a base URL (the file
  is fetched from ``<mirror>/<file name>``) or a local directory holding the files by name. Entries a
  user registered keep their own URL.
* Checks: the bytes stream into a temporary file of a unique name in the cache folder while their
  sha256 is computed; the file is renamed to its final name (``os.replace``: atomic) only when the hash
  matches the entry's (the full hash when the entry has one, else the prefix in torchvision's file
  names) and the length matches the announced one. A mismatch, a truncated or failed transfer, Ctrl-C:
  the temporary file is deleted and nothing is left in the cache. Two processes fetching the same
  file each write their own temporary file; whichever renames last replaces an identical file, so
  the cached file is always whole. A file found in the cache is hashed again before use.
* Every network operation has a timeout (no hang); with no network and no cached file the error says
  which file to fetch and where to put it.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO, Iterator

from zoo.weights.catalogue import TORCHVISION_BASE, WeightEntry

CACHE_ENV = "ZOO_CACHE"
MIRROR_ENV = "ZOO_WEIGHTS_MIRROR"
TIMEOUT_S = 60.0          # per socket operation (connect, each read)
CHUNK = 1 << 20


class DownloadError(OSError):
    """The file could not be fetched (no network, HTTP error, truncated transfer, missing mirror file)."""


class HashMismatchError(ValueError):
    """The file's sha256 is not the catalogue's: nothing was kept."""


def cache_root(cache_dir=None) -> Path:
    """``cache_dir``, else ``$ZOO_CACHE``, else ``~/.cache/cnn-zoo``."""
    root = cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cnn-zoo"
    return Path(root).expanduser()


def cached_path(entry: WeightEntry, cache_dir=None) -> Path:
    """``<cache>/weights/<file name>``; a name that does not carry the hash (a user's ``model.pth``)
    gets its first 8 hex digits (``model-9f2c1a0b.pth``), so two entries never share a cached file."""
    name = entry.filename
    if entry.sha256[:8] not in name:
        stem, dot, suffix = name.rpartition(".")
        name = f"{stem}-{entry.sha256[:8]}.{suffix}" if dot and stem else f"{name}-{entry.sha256[:8]}"
    return cache_root(cache_dir) / "weights" / name


def source(entry: WeightEntry) -> str:
    """Where ``entry``'s file comes from: its URL, or the mirror's copy (``$ZOO_WEIGHTS_MIRROR``) for
    torchvision's files (a URL, or a local path)."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror or not entry.url.startswith(TORCHVISION_BASE):
        return entry.url
    if "://" in mirror:
        return mirror.rstrip("/") + "/" + entry.filename
    return str(Path(mirror).expanduser() / entry.filename)


def matches(digest: str, expected: str) -> bool:
    """A full sha256 must be equal; a prefix (torchvision's file names) must start it."""
    return digest == expected if len(expected) == 64 else digest.startswith(expected)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch(entry: WeightEntry, *, cache_dir=None, progress: bool = True) -> Path:
    """The cached, checked file of ``entry``: downloaded (or copied from the mirror) when absent.
    Raises :class:`HashMismatchError` or :class:`DownloadError`, leaving nothing in the cache."""
    final = cached_path(entry, cache_dir)
    if final.is_file():
        digest = sha256_of(final)
        if not matches(digest, entry.sha256):
            raise HashMismatchError(f"{final}: cached file has sha256 {digest}, but {entry.model} {entry.tag} "
                                    f"expects {entry.sha256}; delete it to download {entry.url} again")
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    where = source(entry)
    with _opened(where, entry, final) as (stream, total):
        _transfer(stream, total, where, entry, final, progress)
    return final


@contextlib.contextmanager
def _opened(where: str, entry: WeightEntry, final: Path) -> Iterator[tuple[BinaryIO, int | None]]:
    """``(readable stream, byte count or None)`` of ``where`` (a URL or a local path)."""
    if "://" not in where:
        path = Path(where)
        if not path.is_file():
            raise DownloadError(f"{entry.filename} is not in the mirror directory {path.parent} (${MIRROR_ENV}); "
                                f"copy {entry.url} there, or put it at {final}")
        with open(path, "rb") as f:
            yield f, path.stat().st_size
        return
    try:
        response = urllib.request.urlopen(where, timeout=TIMEOUT_S)  # noqa: S310  (http(s)/file URLs only)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"cannot download {where}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DownloadError(f"cannot download {where} ({_reason(e)}); without network, fetch that file elsewhere "
                            f"and put it at {final} (or in a directory named by ${MIRROR_ENV})") from e
    with response:
        length = response.headers.get("Content-Length") if hasattr(response, "headers") else None
        yield response, int(length) if length and length.isdigit() else None


def _reason(e: BaseException) -> str:
    return str(getattr(e, "reason", None) or e)


def _transfer(stream: BinaryIO, total: int | None, where: str, entry: WeightEntry, final: Path,
              progress: bool) -> None:
    """Stream into a unique temporary file next to ``final``; rename it only when whole and checked."""
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        h, n = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out, _bar(total, entry.filename, progress) as bar:
            while True:
                try:
                    block = stream.read(CHUNK)
                except (OSError, ValueError, http.client.HTTPException) as e:  # IncompleteRead: a closed transfer
                    raise DownloadError(f"download of {where} failed after {n:,} bytes ({_reason(e)})") from e
                if not block:
                    break
                out.write(block)
                h.update(block)
                n += len(block)
                bar.update(len(block))
        if total is not None and n != total:
            raise DownloadError(f"download of {where} is truncated: {n:,} of {total:,} bytes; nothing was kept")
        digest = h.hexdigest()
        if not matches(digest, entry.sha256):
            raise HashMismatchError(f"sha256 mismatch for {where}: expected {entry.sha256}, got {digest}; nothing "
                                    f"was kept in the cache")   # (a mirror's file is left as it is)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep a shared cache from other users
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _NoBar:
    def update(self, n: int) -> None:
        pass


@contextlib.contextmanager
def _bar(total: int | None, name: str, progress: bool):
    if not progress:
        yield _NoBar()
        return
    from tqdm import tqdm  # noqa: PLC0415

    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, file=sys.stderr,
              mininterval=0.5) as bar:
        yield bar
