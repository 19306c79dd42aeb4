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
  the temporary file is deleted and nothing is left in the cache (a process killed outright leaves its
  temporary file: the next fetch of that file removes it once 10 minutes old). Two processes fetching the same
  file each write their own temporary file; whichever renames last replaces an identical file, so
  the cached file is always whole. A file found in the cache is hashed again before use.
* Every network operation has a timeout, and a transfer that brings fewer than ``STALL_BYTES`` in
  ``STALL_S`` fails (no hang, even on a server that sends a byte now and then); every failed download
  says which file to fetch and where to put it.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO, Iterator

from zoo.files import remove_stale_parts
from zoo.weights.catalogue import TORCHVISION_BASE, WeightEntry

CACHE_ENV = "ZOO_CACHE"
MIRROR_ENV = "ZOO_WEIGHTS_MIRROR"
TIMEOUT_S = 60.0          # per socket operation (connect, each read)
STALL_S, STALL_BYTES = 60.0, 64 << 10   # a transfer slower than 64 KiB a minute is given up
CHUNK = 1 << 20


class DownloadError(OSError):
    """The file could not be fetched (no network, HTTP error, truncated transfer, missing mirror file)."""


class CacheError(DownloadError):
    """The cache folder cannot hold the file (a file in its place, no permission to write)."""


class HashMismatchError(ValueError):
    """The file's sha256 is not the catalogue's: nothing was kept."""


def cache_root(cache_dir=None) -> Path:
    """``cache_dir``, else ``$ZOO_CACHE``, else ``~/.cache/cnn-zoo``."""
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise ValueError(f"cache_dir={cache_dir!r}: a folder path (str or pathlib.Path), or None for ${CACHE_ENV} "
                         f"or ~/.cache/cnn-zoo")
    root = cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cnn-zoo"
    return Path(root).expanduser()


def _cache_named(cache_dir) -> str:
    """Where the cache folder was chosen: ``cache_dir=``, ``$ZOO_CACHE`` or the default."""
    return "cache_dir=" if cache_dir else f"${CACHE_ENV}" if os.environ.get(CACHE_ENV) else "the default cache"


def _writable_folder(folder: Path, cache_dir=None) -> Path:
    """``folder`` of the cache, created; an OSError (a file in its place, no permission) becomes one
    line naming the cache and how it was chosen."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder} is a file, not a folder")
    except OSError as e:
        problem = next((f"{p} is a file, not a folder" for p in (folder, *folder.parents) if p.is_file()), None)
        raise CacheError(f"weights cache {cache_root(cache_dir)} ({_cache_named(cache_dir)}): "
                         f"{problem or 'cannot be written (' + _reason(e) + ')'}; set ${CACHE_ENV} or "
                         f"cache_dir= to a writable folder") from e
    return folder


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
    _writable_folder(final.parent, cache_dir)
    remove_stale_parts(final)
    where = source(entry)
    try:
        with _opened(where, entry, final) as (stream, total, kind):
            _transfer(stream, total, kind, where, entry, final, progress)
    except CacheError:
        raise
    except DownloadError as e:   # every failed download ends with how to get the file without it
        raise DownloadError(f"{e}{_mirrored(where, entry)}; without network, fetch that file elsewhere and put it "
                            f"at {final}{_or_mirror(entry)}") from e.__cause__
    except HashMismatchError as e:
        raise HashMismatchError(f"{e}{_mirrored(where, entry)}; fetch the file with that hash elsewhere and put it "
                                f"at {final}{_or_mirror(entry)}") from None
    return final


def _mirrored(where: str, entry: WeightEntry) -> str:
    return f" (${MIRROR_ENV}; the file's own URL is {entry.url})" if where != entry.url and "://" in where else ""


def _or_mirror(entry: WeightEntry) -> str:
    """The mirror holds torchvision's files only (:func:`source`); a user's entry keeps its URL."""
    return f" (or in a directory named by ${MIRROR_ENV})" if entry.url.startswith(TORCHVISION_BASE) else ""


@contextlib.contextmanager
def _opened(where: str, entry: WeightEntry, final: Path) -> Iterator[tuple[BinaryIO, int | None, str | None]]:
    """``(readable stream, byte count or None, content type or None)`` of ``where`` (a URL or a local path)."""
    if "://" not in where:
        path = Path(where)
        if not path.is_file():
            raise DownloadError(f"{entry.filename} is not in the mirror directory {path.parent} (${MIRROR_ENV}); "
                                f"copy {entry.url} there")
        with open(path, "rb") as f:
            yield f, path.stat().st_size, None
        return
    try:
        response = urllib.request.urlopen(where, timeout=TIMEOUT_S)  # noqa: S310  (http(s)/file URLs only)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"cannot download {where}: HTTP {e.code} {_reason(e)}") from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DownloadError(f"cannot download {where} ({_reason(e)})") from e
    with response:
        headers = getattr(response, "headers", None)
        length = headers.get("Content-Length") if headers is not None else None
        kind = headers.get_content_type() if headers is not None and headers.get("Content-Type") else None
        yield response, int(length) if length and length.isdigit() else None, kind


def _reason(e: BaseException) -> str:
    """``e``'s reason on one line (urllib's redirect-loop message has three)."""
    return " ".join(str(getattr(e, "reason", None) or e).split())


def _transfer(stream: BinaryIO, total: int | None, kind: str | None, where: str, entry: WeightEntry, final: Path,
              progress: bool) -> None:
    """Stream into a unique temporary file next to ``final``; rename it only when whole and checked.
    ``kind``: the server's content type (``text/html`` for a page sent in place of the file)."""
    try:
        fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
    except OSError as e:
        raise _cannot_write(final.parent, e) from e
    tmp = Path(tmp_name)
    read = stream.read1 if hasattr(stream, "read1") else stream.read   # what has arrived: the bar moves, the stall rule sees it
    try:
        h, n = hashlib.sha256(), 0
        window_start, window_n = time.monotonic(), 0
        with os.fdopen(fd, "wb") as out, _bar(total, entry.filename, progress) as bar:
            while True:
                try:
                    block = read(CHUNK)
                except (OSError, ValueError, http.client.HTTPException) as e:  # IncompleteRead: a closed transfer
                    raise DownloadError(f"download of {where} failed after {n:,} bytes ({_reason(e)})") from e
                if not block:
                    break
                out.write(block)
                h.update(block)
                n += len(block)
                bar.update(len(block))
                if time.monotonic() - window_start >= STALL_S:
                    if n - window_n < STALL_BYTES:
                        raise DownloadError(f"download of {where} stalled: {n - window_n:,} bytes in the last "
                                            f"{STALL_S:.0f} s ({n:,} in all)")
                    window_start, window_n = time.monotonic(), n
        if total is not None and n != total:
            raise DownloadError(f"download of {where} is truncated: {n:,} of {total:,} bytes; nothing was kept")
        digest = h.hexdigest()
        if not matches(digest, entry.sha256):
            page = (f"; a {kind} page, not the weight file: the server sent something else" if kind and
                    kind.startswith("text/") and where.startswith(("http://", "https://")) else "")
            size = f" ({entry.file_mb:,.1f} MB expected)" if entry.file_mb else ""
            raise HashMismatchError(f"sha256 mismatch for {where}: expected {entry.sha256}, got {digest} over "
                                    f"{n:,} bytes{size}{page}; nothing was kept in the cache")
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep a shared cache from other users
        os.replace(tmp, final)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, DownloadError):   # writing the cache: a full disk
            raise _cannot_write(final.parent, e) from e
        raise


def _cannot_write(folder: Path, e: OSError) -> CacheError:
    """The cache folder ``folder`` cannot take the file (no room, no permission): how to choose another."""
    return CacheError(f"weights cache folder {folder} cannot be written ({_reason(e)}); set ${CACHE_ENV} or "
                      f"cache_dir= to a writable folder")


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
