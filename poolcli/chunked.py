"""Rows of chunked images (Zarr arrays, TIFFs read through ``aszarr``), read in bands.

A reader here gives :mod:`poolcli.strips` rows on demand (``read(top, bottom)`` as (C, rows, W))
and decodes each chunk row once however thin the strips are (:class:`Band`); :func:`ahead`
makes the next strips on a thread of their own while the current ones are written.

May import: NumPy; nothing of the file formats (their modules hand arrays in).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar, cast

import numpy as np

from poolcli.errors import GiantImageError


class Band:
    """The last rows a reader decoded, in whole chunk (tile, strip) rows, so that each chunk is
    decoded once however thin the strips are: a strip's halo and the part of a chunk row that the
    next strip needs again come from here.

    ``fetch(top, bottom)``, given with each read, decodes rows of whole chunk rows as a
    (C, rows, W) array; ``read`` asks it only for the chunk rows it does not hold.  Memory: one
    band of chunk rows beside the strip, which the decompression-bomb guard already counts.  The
    band holds no reference to its reader (``fetch`` is the reader's method), so that the two are
    freed together as soon as the reader is dropped, not at Python's next full cyclic collection:
    a Dask worker's strip tasks each left a band behind until then (35 MiB each for a 12000 px wide
    RGB Zarr, the worker's memory growing with the image).

    Examples
    --------
    >>> calls = []
    >>> def fetch(top, bottom):
    ...     calls.append((top, bottom))
    ...     return np.arange(top, bottom).reshape(1, -1, 1)
    >>> band = Band(rows=4, height=10)
    >>> [band.read(t, b, fetch).ravel().tolist() for t, b in ((0, 3), (2, 6), (5, 10))]
    [[0, 1, 2], [2, 3, 4, 5], [5, 6, 7, 8, 9]]
    >>> calls
    [(0, 4), (4, 8), (8, 10)]
    """

    def __init__(self, rows: int, height: int):
        self.rows, self.height = max(1, rows), height
        self.top = self.bottom = 0
        self.data: np.ndarray | None = None

    def read(self, top: int, bottom: int, fetch: Callable[[int, int], np.ndarray]) -> np.ndarray:
        if bottom <= top:
            return fetch(top, top)
        start = top // self.rows * self.rows
        end = min(-(-bottom // self.rows) * self.rows, self.height)
        parts = []
        at = start
        if self.data is not None and self.top <= start < self.bottom:
            keep = min(self.bottom, end)
            parts.append(self.data[:, start - self.top: keep - self.top])
            at = keep
        if at < end:
            self.data = None  # rows not kept are not held while the next ones are decoded
            parts.append(fetch(at, end))
        self.data = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        self.top, self.bottom = start, end
        return self.data[:, top - start: bottom - start]


class ChunkedReader:
    """One (C, H, W) image of a chunked array: reads rows (and optionally some channels only).
    ``kind`` ("Zarr", or "TIFF" for a TIFF read through ``aszarr``) words a chunk that fails."""

    def __init__(self, array: Any, index: Callable[[slice | list[int], slice], tuple], shape: tuple[int, int, int],
                 channels_last: bool, kind: str = "Zarr", band_rows: int | None = None):
        self.array = array
        self.index = index  # (channels, rows) -> selection in the array
        self.shape = shape
        self.dtype = np.dtype(array.dtype)
        self.channels_last = channels_last
        self.kind = kind
        # chunk rows decoded once, however thin the strips (None: every read goes to the array)
        self.band = Band(band_rows, shape[1]) if band_rows else None

    def fetch(self, selection: tuple, get: Callable[[], Any]) -> np.ndarray:
        """``get()`` (reading ``selection``) as an array; data that fails to decode is a
        :class:`GiantImageError` that names the chunk (storage errors pass through as they are)."""
        try:
            return np.asarray(get())
        except (OSError, MemoryError):
            raise
        except Exception as error:  # codecs raise their own types for damaged data
            raise GiantImageError(chunk_failure(self.array, selection, error, self.kind)) from None

    def read(self, top: int, bottom: int) -> np.ndarray:
        return self.band.read(top, bottom, self._read) if self.band is not None else self._read(top, bottom)

    def _read(self, top: int, bottom: int) -> np.ndarray:
        selection = self.index(slice(None), slice(top, bottom))
        data = self.fetch(selection, lambda: self.array[selection])
        if data.ndim == 2:
            return data[None]
        return data.transpose(2, 0, 1) if self.channels_last else data

    def channels(self, picks: list[int]) -> ChannelPick:
        return ChannelPick(self, picks)


class ChannelPick:
    """Some channels of a reader (planar TIFF: only their tiles are decoded)."""

    def __init__(self, reader: ChunkedReader, picks: list[int]):
        self.reader, self.picks = reader, picks
        self.shape = (len(picks), *reader.shape[1:])
        self.dtype = reader.dtype

    def read(self, top: int, bottom: int) -> np.ndarray:
        if self.reader.channels_last or self.reader.shape[0] == 1:
            return self.reader.read(top, bottom)[self.picks]
        # a list of channels is an orthogonal selection (zarr 2's [] takes only slices and ints)
        selection = self.reader.index(self.picks, slice(top, bottom))
        return self.reader.fetch(selection, lambda: self.reader.array.get_orthogonal_selection(selection))


def chunk_failure(array: Any, selection: tuple, error: Exception, kind: str) -> str:
    """The reason a read of ``selection`` failed: for Zarr, the first chunk that fails on its own
    (its key, as in the store), and whether its data contradicts the metadata."""
    text = str(error) or type(error).__name__
    if kind != "Zarr":
        return f"damaged {kind} data ({text})"
    import itertools

    ranges = []
    for size, chunk, picked in zip(array.shape, array.chunks, selection, strict=False):
        if isinstance(picked, slice):
            start, stop, _ = picked.indices(size)
        elif isinstance(picked, list):
            start, stop = min(picked), max(picked) + 1
        else:
            start, stop = int(picked), int(picked) + 1
        ranges.append(range(start // chunk, -(-stop // chunk)))
    for coords in itertools.product(*ranges):
        region = tuple(slice(c * n, min((c + 1) * n, size)) for c, n, size in zip(coords, array.chunks, array.shape,
                                                                                   strict=True))
        try:
            array[region]
        except Exception as failure:  # this one chunk fails: name it
            encode = getattr(getattr(array, "metadata", None), "encode_chunk_key", None)
            key = encode(coords) if callable(encode) else ".".join(str(c) for c in coords)
            said = str(failure) or type(failure).__name__
            if isinstance(failure, ValueError) and "reshape" in said:
                return f"Zarr metadata does not match its data (chunk {key}: {said})"
            return f"damaged Zarr chunk {key} ({said})"
    return f"damaged Zarr data ({text})"

Strips = Iterable[tuple[int, int, np.ndarray]]

T = TypeVar("T")


def ahead(pieces: Iterable[T]) -> Iterator[T]:
    """``pieces`` made on a thread of their own, one ahead: the next is made while the consumer
    works on this one (the next strips read and pooled while this one is written: one thread did
    both in turn, with a CPU to spare).  At most two pieces live at once, the one the consumer
    holds and the next.  What ``pieces`` raises is raised here, in order; when the consumer
    stops early, the thread stops after the piece under way (and ``pieces`` is closed on it).

    Examples
    --------
    >>> list(ahead(iter(range(5))))
    [0, 1, 2, 3, 4]
    >>> def failing():
    ...     yield 1
    ...     raise ValueError("bad strip")
    >>> seen = []
    >>> try:
    ...     for piece in ahead(failing()):
    ...         seen.append(piece)
    ... except ValueError as error:
    ...     print(seen, error)
    [1] bad strip
    """
    import queue
    import threading

    ready: queue.SimpleQueue[tuple[bool, object]] = queue.SimpleQueue()
    room = threading.Semaphore(1)  # the next piece is begun once the consumer has taken the last
    stop = threading.Event()

    def make() -> None:
        iterator = iter(pieces)
        try:
            while True:
                while not room.acquire(timeout=0.05):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                try:
                    piece = next(iterator)
                except StopIteration:
                    ready.put((True, None))
                    return
                ready.put((False, piece))
                del piece
        except BaseException as error:  # handed to the consumer, raised there
            ready.put((True, error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=make, name="poolcli-ahead", daemon=True)
    thread.start()
    try:
        while True:
            last, item = ready.get()
            if last:
                if isinstance(item, BaseException):
                    raise item
                return
            room.release()
            yield cast(T, item)
            del item
    finally:
        stop.set()
        thread.join()

