"""Which input files a folder or a storage prefix holds: the same rules, in the same order, on disk
and on object storage.

A walk picks image and ``.npy`` extensions in any case, skips hidden names, never follows a
symlinked folder, takes a ``.zarr`` store as one input, and sorts by name, so that a bucket
prefix gives the same files in the same order (mirrored to the same output keys) as the same
tree on disk.  A prefix is listed lazily, level by level, page by page where the store allows it.

May import: the standard library, ``formats`` and ``storage`` (fsspec only when a URL is listed).

>>> list(by_name([("b.png", False), ("a", True)]))
[('a', True), ('b.png', False)]
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolcli import formats
from poolcli.storage import call_s3, filesystem, is_local_url, is_s3, join, local_path, translated

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

ARRAY_EXTENSION = ".npy"


def is_candidate(path: Path) -> bool:
    """Files a folder walk picks up: image extensions (any case) and .npy."""
    suffix = path.suffix.lower()
    return suffix in formats.READ_EXTENSIONS or suffix == ARRAY_EXTENSION


def walk(folder: str, recursive: bool, unwalked: set[str] | None = None) -> Iterator[str]:
    """Candidate files under ``folder`` in sorted order, as paths joined onto ``folder`` as given
    (``./photos`` gives ``./photos/a.png``); hidden files and folders are skipped.  Without
    ``recursive``, the subfolders left alone are added to ``unwalked`` (for the hint to add -r).

    Symlinked folders are not followed, so a link loop cannot hang the walk; each real folder is
    visited once.  The walk keeps its own stack, so a tree of any depth is fine.
    """
    seen: set[tuple[int, int]] = set()

    def entries(directory: str) -> Iterator[os.DirEntry[str]]:
        try:
            stat = os.stat(directory)
        except OSError:
            return iter(())
        key = (stat.st_dev, stat.st_ino)
        if key in seen:
            return iter(())
        seen.add(key)
        try:
            with os.scandir(directory) as scan:
                return iter(sorted(scan, key=lambda entry: entry.name))
        except OSError:
            return iter(())

    stack = [entries(folder)]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                if formats.is_zarr_path(entry.path):
                    yield entry.path  # a Zarr store is one input, not a folder to walk
                elif recursive:
                    stack.append(entries(entry.path))
                elif unwalked is not None:
                    unwalked.add(entry.path)
            elif entry.is_file() and is_candidate(Path(entry.name)):
                yield entry.path
        except OSError:
            continue


def is_candidate_name(name: str) -> bool:
    """:func:`is_candidate` of a bare file name."""
    return is_candidate(Path(name))


def walk_url(folder: str, recursive: bool, candidate: Callable[[str], bool] | None = None,
             storage_options: str | None = None, unwalked: set[str] | None = None) -> Iterator[str]:
    """Files under a folder URL for which ``candidate(name)`` holds, sorted as
    :func:`walk` sorts, as URLs joined onto ``folder`` as typed; ``unwalked`` as :func:`walk`'s.

    Lazy: a level is read page by page where the store allows it (S3), so memory does not grow
    with the number of files in the folder.
    """
    candidate = candidate or is_candidate_name
    if is_local_url(folder):
        base = local_path(folder)
        skipped: set[str] = set()
        for found in walk(base, recursive, skipped):
            yield join(folder, os.path.relpath(found, base).replace(os.sep, "/"))
        if unwalked is not None:
            unwalked.update(join(folder, os.path.relpath(path, base).replace(os.sep, "/")) for path in skipped)
        return
    fs, root = filesystem(folder, storage_options)
    lister = _s3_level if is_s3(fs) else _plain_level

    def visit(path: str, relative: str) -> Iterator[str]:
        for name, is_dir in lister(fs, path):
            if name.startswith(".") or not name:
                continue
            inner = f"{relative}{name}"
            if is_dir:
                if recursive:
                    yield from visit(f"{path.rstrip('/')}/{name}", inner + "/")
                elif unwalked is not None:
                    unwalked.add(join(folder, inner))
            elif candidate(name):
                yield join(folder, inner)

    with translated(folder):
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
    """One level of an S3 prefix, page by page (1000 keys each), in :func:`walk`'s order."""
    bucket, _, prefix = path.partition("/")
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def pages() -> Iterator[tuple[str, bool]]:
        kwargs: dict[str, Any] = dict(Bucket=bucket, Prefix=prefix, Delimiter="/", **getattr(fs, "req_kw", {}))
        while True:
            page = call_s3(fs, "list_objects_v2", **kwargs)
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
