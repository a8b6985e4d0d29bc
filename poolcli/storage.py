"""Inputs, folders and outputs given as fsspec URLs (``s3://``, ``gs://``, ``abfs://``, ``file://``,
``memory://``, ...).

fsspec is imported only when a URL is used, so plain paths cost nothing.  Folders are listed
lazily, level by level, with the rules of :func:`poolcli.batch.walk` (image and ``.npy``
extensions in any case, hidden names skipped, sorted by name), so that a bucket prefix gives the
same files in the same order, mirrored to the same output keys, as the same tree on disk.
Writes are whole or nothing: a temporary file and a rename where there is a file system, one
PUT (or a multipart upload aborted on failure) on object stores.

May import: the standard library at import time; fsspec (and through it s3fs, gcsfs, ...) only
when a URL is used.

>>> is_url("s3://bucket/photos/"), is_url("photos/a.png"), is_url("C:\\\\photos")
(True, False, False)
>>> redact("ftp://user:secret@host/a.png")
'ftp://***@host/a.png'
>>> join("s3://bucket/out/", "sub/a.png")
's3://bucket/out/sub/a.png'
"""

from __future__ import annotations

import contextlib
import heapq
import io
import os
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

INSTALL_HINT = 'pip install "poolcli[dask]"'
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_CREDENTIALS = re.compile(r"(?<=://)[^/@]*@")
LOCAL_PROTOCOLS = ("file", "local")
# Stores where an object appears whole in one PUT: write the bytes at once, never rename.
OBJECT_STORES = ("s3", "s3a", "gs", "gcs", "abfs", "az", "adl", "abfss", "memory", "oss", "r2")


class StorageError(Exception):
    """A URL that cannot be used (no fsspec, unknown protocol, bad storage options)."""


def is_url(text: str | None) -> bool:
    """Is ``text`` a URL with a protocol (``s3://...``) rather than a plain path?"""
    return bool(text) and _URL.match(text) is not None  # type: ignore[arg-type]


def protocol(url: str) -> str:
    match = _URL.match(url)
    return match.group(1).lower() if match else "file"


def is_local_url(url: str) -> bool:
    return protocol(url) in LOCAL_PROTOCOLS


def local_path(url: str) -> str:
    """The path of a ``file://`` URL (``file:///tmp/a.png`` → ``/tmp/a.png``)."""
    return url[len(protocol(url)) + 3:] or "/"


def redact(text: str) -> str:
    """``text`` with any ``user:password@`` of a URL replaced: nothing secret is ever printed."""
    return _CREDENTIALS.sub("***@", text) if "://" in text else text


def join(folder: str, relative: str) -> str:
    """A relative POSIX path under a folder URL as typed (one ``/`` between them)."""
    return folder.rstrip("/") + "/" + relative if not folder.endswith("://") else folder + relative


def key(url: str) -> str:
    """A canonical form of a URL for comparing outputs with each other and with inputs."""
    if is_local_url(url):
        return os.path.abspath(local_path(url))
    scheme = protocol(url)
    rest = redact(url)[len(scheme) + 3:]
    return f"{scheme}://{posixpath.normpath('/' + rest)[1:]}"


@lru_cache(maxsize=8)
def _parsed_options(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    import json  # here: only --storage-options needs it

    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise StorageError(f"not valid JSON ({error.msg})") from None
    if not isinstance(value, dict):
        raise StorageError("give a JSON object, e.g. '{\"anon\": true}'")
    return value


def check_options(text: str | None) -> None:
    """Raise :class:`StorageError` if ``--storage-options`` is not a JSON object."""
    _parsed_options(text)


def options_for(url: str, text: str | None) -> dict[str, Any]:
    """The storage options for ``url``: the JSON object itself, or its entry for the URL's protocol
    when every key names a protocol (``{"s3": {...}, "gs": {...}}``)."""
    options = _parsed_options(text)
    if options and all(isinstance(v, dict) and name in _known_protocols() for name, v in options.items()):
        return dict(options.get(protocol(url), {}))
    return dict(options)


def _known_protocols() -> set[str]:
    from fsspec.registry import known_implementations

    return set(known_implementations)


def filesystem(url: str, storage_options: str | None = None) -> tuple[AbstractFileSystem, str]:
    """The fsspec file system of a URL and the path in it."""
    try:
        import fsspec.core
    except ImportError:
        raise StorageError(f"reading and writing URLs needs fsspec: {INSTALL_HINT}") from None
    try:
        return fsspec.core.url_to_fs(url, **options_for(url, storage_options))
    except ImportError as error:  # e.g. s3fs or gcsfs missing
        raise StorageError(f"{protocol(url)}:// needs a package that is not installed ({error})") from None
    except ValueError as error:
        raise StorageError(f"cannot use {redact(url)}: {error}") from None


# --------------------------------------------------------------------------- questions


def exists(url: str, storage_options: str | None = None) -> bool:
    if is_local_url(url):
        return os.path.exists(local_path(url))
    fs, path = filesystem(url, storage_options)
    return bool(fs.exists(path))


def isdir(url: str, storage_options: str | None = None) -> bool:
    if is_local_url(url):
        return os.path.isdir(local_path(url))
    fs, path = filesystem(url, storage_options)
    return bool(fs.isdir(path))


def isfile(url: str, storage_options: str | None = None) -> bool:
    if is_local_url(url):
        return os.path.isfile(local_path(url))
    fs, path = filesystem(url, storage_options)
    return bool(fs.isfile(path))


# --------------------------------------------------------------------------- listing


def walk(folder: str, recursive: bool, candidate: Callable[[str], bool],
         storage_options: str | None = None) -> Iterator[str]:
    """Files under a folder URL for which ``candidate(name)`` holds, sorted as
    :func:`poolcli.batch.walk` sorts, as URLs joined onto ``folder`` as typed.

    Lazy: a level is read page by page where the store allows it (S3), so memory does not grow
    with the number of files in the folder.
    """
    if is_local_url(folder):
        from poolcli import batch

        base = local_path(folder)
        for found in batch.walk(base, recursive):
            yield join(folder, os.path.relpath(found, base).replace(os.sep, "/"))
        return
    fs, root = filesystem(folder, storage_options)
    lister = _s3_level if hasattr(fs, "_call_s3") else _plain_level

    def visit(path: str, relative: str) -> Iterator[str]:
        for name, is_dir in lister(fs, path):
            if name.startswith(".") or not name:
                continue
            inner = f"{relative}{name}"
            if is_dir:
                if recursive:
                    yield from visit(f"{path.rstrip('/')}/{name}", inner + "/")
            elif candidate(name):
                yield join(folder, inner)

    yield from visit(root, "")


def _plain_level(fs: AbstractFileSystem, path: str) -> Iterator[tuple[str, bool]]:
    """One level of any fsspec file system, sorted by name (the level is held in memory)."""
    try:
        entries = fs.ls(path, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return
    found = []
    for entry in entries:
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry["name"].rstrip("/") == path.rstrip("/"):
            continue  # some stores list the folder itself
        found.append((name, entry.get("type") == "directory"))
    yield from sorted(found)


def _s3_level(fs: Any, path: str) -> Iterator[tuple[str, bool]]:
    """One level of an S3 prefix, page by page (1000 keys each), in :func:`batch.walk`'s order."""
    from fsspec.asyn import sync

    bucket, _, prefix = path.partition("/")
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def pages() -> Iterator[tuple[str, bool]]:
        kwargs: dict[str, Any] = dict(Bucket=bucket, Prefix=prefix, Delimiter="/", **getattr(fs, "req_kw", {}))
        while True:
            page = sync(fs.loop, fs._call_s3, "list_objects_v2", **kwargs)
            entries = [(p["Prefix"][len(prefix):-1], True) for p in page.get("CommonPrefixes", [])]
            entries += [(c["Key"][len(prefix):], False) for c in page.get("Contents", [])]
            # a page is one contiguous range of keys; a folder's key ends in "/"
            yield from sorted(entries, key=lambda e: e[0] + "/" if e[1] else e[0])
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    yield from by_name(pages())


def by_name(entries: Iterable[tuple[str, bool]]) -> Iterator[tuple[str, bool]]:
    """Reorder one level from key order (a folder sorts as ``NAME/``) to name order, holding back
    only the few entries that a folder listed later could still precede.

    >>> list(by_name([("a b.png", False), ("a.png", False), ("a", True), ("b.png", False)]))
    [('a', True), ('a b.png', False), ('a.png', False), ('b.png', False)]
    """
    held: list[tuple[str, bool]] = []
    for name, is_dir in entries:
        # A folder listed later as "D/" sorts by name as D, and D is at least the shortest
        # prefix of this key that is followed by a character up to "/".
        current = name + "/" if is_dir else name
        cut = next((i for i, char in enumerate(current) if char <= "/"), len(current))
        bound = current[:cut]
        while held and held[0][0] < bound:
            yield heapq.heappop(held)
        heapq.heappush(held, (name, is_dir))
    while held:
        yield heapq.heappop(held)


# --------------------------------------------------------------------------- reading and writing


def read_bytes(url: str, storage_options: str | None = None) -> bytes:
    """The whole object.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, EOFError
        For a missing object, a folder, an empty object.
    """
    fs, path = filesystem(url, storage_options)
    info = fs.info(path)
    if info.get("type") == "directory":
        raise IsADirectoryError(url)
    if not info.get("size"):
        raise EOFError(url)
    return bytes(fs.cat_file(path))


def write(url: str, write_to: Callable[[BinaryIO], None], storage_options: str | None = None) -> None:
    """Write an object that appears whole or not at all.

    Object stores get the encoded bytes in one PUT (s3fs turns more than 100 MB into a multipart
    upload that it aborts on failure); other file systems a temporary name and a move.
    """
    if is_local_url(url):
        from poolcli.pipeline import atomic_write

        atomic_write(local_path(url), write_to)
        return
    buffer = io.BytesIO()
    write_to(buffer)  # encode first: a failed encoding never reaches the store
    fs, path = filesystem(url, storage_options)
    if protocol(url) in OBJECT_STORES or not hasattr(fs, "mv"):
        fs.pipe_file(path, buffer.getvalue())
        return
    import uuid

    parent, name = path.rsplit("/", 1) if "/" in path else ("", path)
    temporary = f"{parent}/.{name}.{uuid.uuid4().hex}.part" if parent else f".{name}.{uuid.uuid4().hex}.part"
    with contextlib.suppress(Exception):
        fs.makedirs(parent, exist_ok=True)
    try:
        fs.pipe_file(temporary, buffer.getvalue())
        fs.mv(temporary, path)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm_file(temporary)
        raise
