"""PNG files written fast, and read while they are pooled.

May import: NumPy, imagecodecs (its libdeflate codec, on first use), ``inflate``, ``frames`` (a
Frame is what the writer reads) and the standard library (never Pillow: ``images`` hands
:class:`RowStream` the function that unfilters rows).

Writing
-------
Encoding, not pooling, decided the time of a PNG run: Pillow's encoder (zlib-ng behind a
row-at-a-time filter loop) took 0.55 s for a 2048x2048 RGB image at level 2.  Here the five PNG
row filters are whole-array NumPy operations on bands of rows, each row keeps the filter with the
smallest sum of absolute values (libpng's heuristic), and libdeflate compresses the filtered
image in one call: 0.13 s for a smaller file (README, "PNG compression").

Every single-frame PNG poolcli writes comes through here, 8-bit and 16-bit; animated PNG is
Pillow's.  The caller passes the metadata chunks (:func:`chunk`).

Reading
-------
Inflating the image data is most of the time of decoding a PNG (0.33 of 0.40 s for a 4096x4096
photo), and zlib's inflate is one thread.  :class:`RowStream` inflates on a thread of its own
and hands the inflated, still filtered rows to a second thread that unfilters them (Pillow's
own PNG decoder, fed the rows as stored deflate blocks), so that pooling can start on the first
rows while the rest are still being inflated.  Rows are read as they become ready
(:meth:`RowStream.wait`).
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Callable, Sequence
from typing import BinaryIO

import numpy as np

from poolcli import inflate
from poolcli.frames import Frame
from poolcli.inflate import SIGNATURE, StreamError, idat_spans

__all__ = ["PAETH_LEVEL", "SIGNATURE", "RowStream", "StreamError", "chunk", "filtered", "idat_spans", "write"]

# Channels -> PNG colour type: gray, gray with alpha, RGB, RGBA.
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}
# From this level on the Paeth filter is tried too: about 1% smaller files for 3 to 5 times the
# filtering time (benchmarks/bench_compression.py).
PAETH_LEVEL = 6
# Rows filtered at once, so that a band's scratch arrays stay in the CPU cache's reach (256 KiB
# was the fastest of 32 KiB to 1 MiB; threads made it slower: NumPy's steps are too small).
_BAND_BYTES = 1 << 18
# Filtered images smaller than this are compressed by zlib, which is already loaded.
_LIBDEFLATE_BYTES = 1 << 20
# IDAT chunks of at most this many bytes (any size up to 2**31 - 1 is valid PNG).
_IDAT_BYTES = 1 << 20


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC.

    >>> chunk(b"IEND", b"").hex()
    '0000000049454e44ae426082'
    """
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write(stream: BinaryIO, pixels: np.ndarray | Frame, level: int, chunks: Sequence[bytes] = ()) -> None:
    """Write (H, W, C) ``pixels`` (uint8 or uint16, 1 to 4 channels: gray, gray with alpha, RGB,
    RGBA) as a non-interlaced PNG, with ``chunks`` (made by :func:`chunk`) before the image data.
    ``pixels`` may be an array or a :class:`~poolcli.frames.Frame` (``rows(top, bottom)``),
    which is read a band of rows at a time, in order.

    ``level`` is libdeflate's level, 0 to 9 (0 stores the rows unfiltered and uncompressed).

    Examples
    --------
    >>> import io
    >>> out = io.BytesIO()
    >>> write(out, np.array([[[0], [255]]], dtype=np.uint8), level=6)
    >>> out.getvalue()[:8] == SIGNATURE, out.getvalue()[12:16]
    (True, b'IHDR')
    """
    height, width, channels = pixels.shape
    if pixels.dtype not in (np.uint8, np.uint16) or channels not in COLOUR_TYPES or not 0 <= level <= 9:
        raise ValueError(f"cannot write {pixels.dtype} pixels of {channels} channels at level {level} as PNG")
    depth = pixels.dtype.itemsize * 8
    header = struct.pack(">IIBBBBB", width, height, depth, COLOUR_TYPES[channels], 0, 0, 0)
    compressed = _compressed(filtered(pixels, level), level)
    stream.write(SIGNATURE + chunk(b"IHDR", header) + b"".join(chunks))
    view = memoryview(compressed)
    for start in range(0, max(len(view), 1), _IDAT_BYTES):
        part = view[start: start + _IDAT_BYTES]
        stream.write(struct.pack(">I", len(part)) + b"IDAT")
        stream.write(part)
        stream.write(struct.pack(">I", zlib.crc32(part, zlib.crc32(b"IDAT"))))
    stream.write(chunk(b"IEND", b""))


def filtered(pixels: np.ndarray | Frame, level: int) -> np.ndarray:
    """The rows of ``pixels`` as PNG filters them: (H, 1 + row bytes) uint8, each row its filter
    type then its filtered bytes (big-endian samples).  Level 0 filters nothing; higher levels
    choose per row among None, Sub, Up and Average (and Paeth from :data:`PAETH_LEVEL`).

    >>> filtered(np.array([[[10], [12]], [[11], [15]]], dtype=np.uint8), level=1).tolist()
    [[1, 10, 2], [2, 1, 3]]
    """
    height, width, channels = pixels.shape
    big_endian = pixels.dtype.newbyteorder(">")
    stride = width * channels * pixels.dtype.itemsize
    out = np.empty((height, stride + 1), dtype=np.uint8)
    band = max(1, _BAND_BYTES // max(stride, 1))
    if level == 0 or stride == 0:
        out[:, 0] = 0
        for top in range(0, height, band):
            part = _band(pixels, top, min(height, top + band))
            np.copyto(out[top: top + len(part), 1:].view(big_endian).reshape(part.shape), part)
        return out
    filters = _Filters(band, stride, channels * pixels.dtype.itemsize, paeth=level >= PAETH_LEVEL)
    for top in range(0, height, band):
        part = _band(pixels, top, min(height, top + band))
        np.copyto(filters.rows[1: 1 + len(part)].view(big_endian).reshape(part.shape), part)
        filters.filter(len(part), out[top: top + len(part)])
    return out


def _band(pixels: np.ndarray | Frame, top: int, bottom: int) -> np.ndarray:
    return pixels[top:bottom] if isinstance(pixels, np.ndarray) else pixels.rows(top, bottom)


class _Filters:
    """Filters bands of rows with scratch arrays made once: fresh temporaries for every band
    cost a page fault per 4 KiB (measured: 0.1 s of system time for a 2048x2048 RGB image)."""

    def __init__(self, band: int, stride: int, bpp: int, paeth: bool):
        self.bpp = bpp
        self.rows = np.zeros((band + 1, stride), dtype=np.uint8)  # row 0: the row above the band
        self.filtered = np.empty((5 if paeth else 4, band, stride), dtype=np.uint8)
        self.scratch = np.empty((2, band, stride), dtype=np.uint8)
        self.costs = np.empty((len(self.filtered), band), dtype=np.uint32)
        self.wide = np.empty((6, band, stride), dtype=np.int16) if paeth else None
        self.masks = np.empty((2, band, stride), dtype=bool) if paeth else None

    def filter(self, n: int, out: np.ndarray) -> None:
        """Filter rows 1..n of ``self.rows`` into ``out`` (n rows), each row by the filter whose
        bytes, read as signed, have the smallest sum of absolute values; then keep the last row
        as the next band's row above."""
        bpp, x, up = self.bpp, self.rows[1: n + 1], self.rows[:n]
        none, sub, average = self.filtered[0, :n], self.filtered[1, :n], self.filtered[3, :n]
        half, low = self.scratch[0, :n], self.scratch[1, :n]
        np.copyto(none, x)
        sub[:, :bpp] = x[:, :bpp]
        np.subtract(x[:, bpp:], x[:, :-bpp], out=sub[:, bpp:])  # uint8: modulo 256, as PNG wants
        np.subtract(x, up, out=self.filtered[2, :n])
        # Average: floor((left + up) / 2) without leaving 8 bits: (a & b) + ((a ^ b) >> 1).
        np.right_shift(up[:, :bpp], 1, out=half[:, :bpp])
        np.bitwise_xor(x[:, :-bpp], up[:, bpp:], out=half[:, bpp:])
        np.right_shift(half[:, bpp:], 1, out=half[:, bpp:])
        np.bitwise_and(x[:, :-bpp], up[:, bpp:], out=low[:, bpp:])
        np.add(half[:, bpp:], low[:, bpp:], out=half[:, bpp:])
        np.subtract(x, half, out=average)
        if self.wide is not None:
            self._paeth(n)
        costs = self.costs[:, :n]
        for kind in range(len(self.filtered)):  # |byte as signed| = min(v, 256 - v)
            np.negative(self.filtered[kind, :n], out=half)
            np.minimum(self.filtered[kind, :n], half, out=half)
            np.add.reduce(half, axis=1, dtype=np.uint32, out=costs[kind])
        choice = costs.argmin(axis=0)  # ties go to the simpler filter, as in libpng
        out[:, 0] = choice
        for used in np.flatnonzero(np.bincount(choice)):  # not np.unique: it imports numpy.ma (13 ms)
            np.copyto(out[:, 1:], self.filtered[used, :n], where=(choice == used)[:, None])
        self.rows[0] = self.rows[n]

    def _paeth(self, n: int) -> None:
        assert self.wide is not None and self.masks is not None
        bpp, x, up = self.bpp, self.rows[1: n + 1], self.rows[:n]
        left, above, corner, to_corner_a, to_corner_b, both = (w[:n] for w in self.wide)
        left[:, :bpp] = 0
        left[:, bpp:] = x[:, :-bpp]
        np.copyto(above, up)
        corner[:, :bpp] = 0
        corner[:, bpp:] = up[:, :-bpp]
        np.subtract(above, corner, out=to_corner_a)  # the PNG spec's pa = |b - c|
        np.subtract(left, corner, out=to_corner_b)  # pb = |a - c|
        np.add(to_corner_a, to_corner_b, out=both)  # pc = |a + b - 2c|
        for distance in (to_corner_a, to_corner_b, both):
            np.abs(distance, out=distance)
        first, second = self.masks[0, :n], self.masks[1, :n]
        predictor = corner  # c, unless b is nearer, unless a is nearest
        np.less_equal(to_corner_b, both, out=first)
        np.copyto(predictor, above, where=first)
        np.less_equal(to_corner_a, to_corner_b, out=first)
        np.less_equal(to_corner_a, both, out=second)
        np.logical_and(first, second, out=first)
        np.copyto(predictor, left, where=first)
        np.copyto(self.scratch[0, :n], predictor, casting="unsafe")  # 0..255: exact
        np.subtract(x, self.scratch[0, :n], out=self.filtered[4, :n])


def _compressed(data: np.ndarray, level: int) -> bytes:
    """``data`` as one zlib stream: by libdeflate (its level 0 stores), or by zlib below
    :data:`_LIBDEFLATE_BYTES` (importing imagecodecs would cost more than the compression) and
    where an imagecodecs build lacks libdeflate (same format, larger and slower)."""
    if data.nbytes < _LIBDEFLATE_BYTES:
        return zlib.compress(data.data, level)
    import imagecodecs

    if getattr(imagecodecs, "DEFLATE", None) is not None and imagecodecs.DEFLATE.available:
        return bytes(imagecodecs.deflate_encode(data, level=level))  # type: ignore[arg-type]  # any buffer
    return zlib.compress(data.data, level)


# --------------------------------------------------------------------------- reading


def _stopped(data: bytes) -> bool:
    raise StreamError("reading stopped")


class RowStream:
    """The filtered rows of a PNG's image data, inflated on one thread (an
    :class:`~poolcli.inflate.Inflater`, perhaps started by the CLI before this module was
    imported) and handed to ``feed`` on another as a zlib stream of stored blocks (``feed``
    returns True once it has every row).

    ``row_bytes`` counts a row's filter byte.  :meth:`wait` blocks until a number of rows has been
    fed; :meth:`finish` until the rest of the image data (rows nobody needed, the end of the zlib
    stream, its checksum) is read and checked; :meth:`close` stops both threads (call it before
    freeing what ``feed`` writes into).
    """

    # Once rows are released (:meth:`release`), the unfilterer stays at most this many decoded
    # bytes ahead of them (or of the rows waited for, if further): decoded rows nobody has pooled
    # yet are all that grows with the image.
    AHEAD = 16 << 20

    def __init__(self, source: str | bytes, spans: list[tuple[int, int]], row_bytes: int, height: int,
                 feed: Callable[[bytes], bool]):
        self._feed, self._row_bytes, self._height = feed, row_bytes, height
        self._inflater = inflate.take(source, spans, row_bytes * height, row_bytes)
        self._ready = threading.Condition()
        self._rows = 0
        self._released: int | None = None  # rows given back (release); None: decode as fast as it can
        self._wanted = 0  # the most rows waited for
        self._checked = False  # every byte of the image data read, and the stream's end and checksum right
        self._error: StreamError | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._unfilter, name="poolcli-unfilter", daemon=True)
        self._thread.start()

    @property
    def rows(self) -> int:
        """How many rows are decoded (whole) so far."""
        return self._rows

    def release(self, rows: int) -> None:
        """Rows above ``rows`` are no longer needed: from now on the unfilterer stays at most
        :data:`AHEAD` bytes of rows ahead of them (or of the rows waited for)."""
        with self._ready:
            self._released = max(self._released or 0, rows)
            self._ready.notify_all()

    def _may_feed(self) -> bool:
        if self._released is None or self._stopped.is_set():
            return True
        ahead = max(1, self.AHEAD // self._row_bytes)
        return self._rows < max(self._released + ahead, self._wanted)

    def wait(self, rows: int) -> None:
        """Return once ``rows`` rows are ready; raise :class:`StreamError` if they never will be."""
        with self._ready:
            if rows > self._wanted:
                self._wanted = rows
                self._ready.notify_all()
            self._ready.wait_for(lambda: self._rows >= rows or self._error is not None)
            if self._stopped.is_set():
                raise StreamError("reading stopped")
            if self._rows < rows:
                raise self._error or StreamError("image file is truncated")

    def finish(self) -> None:
        """Return once all of the image data was read and found whole (see
        :func:`poolcli.inflate.inflated`); raise :class:`StreamError` if it was not."""
        with self._ready:
            self._wanted = self._height  # every row, now
            self._ready.notify_all()
            self._ready.wait_for(lambda: self._checked or self._error is not None)
            if not self._checked:  # once checked, it stays so: closing afterwards changes nothing
                raise self._error or StreamError("reading stopped")

    def close(self) -> None:
        """Stop reading; return once neither thread runs (``feed`` is never called after)."""
        self._stopped.set()
        self._inflater.close()  # also wakes the unfilterer, waiting for a piece
        with self._ready:  # or waiting for rows to be released
            self._ready.notify_all()
        self._thread.join()
        self._feed = _stopped  # lets go of the decoder, and the image it holds
        with self._ready:
            self._error = self._error or StreamError("reading stopped")
            self._ready.notify_all()

    def _unfilter(self) -> None:
        fed = 0
        try:
            self._feed(b"\x78\x01")  # a zlib header; then each piece as stored blocks
            while not self._stopped.is_set():
                with self._ready:
                    self._ready.wait_for(self._may_feed)
                piece = self._inflater.get()
                if piece is None or self._stopped.is_set():
                    break
                view = memoryview(piece)
                blocks: list[bytes | memoryview] = []
                for start in range(0, len(view), 0xFFFF):
                    block = view[start: start + 0xFFFF]
                    blocks += (struct.pack("<BHH", 0, len(block), len(block) ^ 0xFFFF), block)
                done = self._feed(b"".join(blocks))
                fed += len(piece)
                with self._ready:
                    self._rows = self._height if done else min(self._height, fed // self._row_bytes)
                    self._ready.notify_all()
                if done:
                    break
            if self._stopped.is_set():
                return
            if self._rows < self._height:
                raise StreamError("image file is truncated")
            if self._inflater.get() is not None:  # the inflater's verdict on the rest: None is "whole"
                raise inflate.Damaged("the image data holds more than its header's rows")
            if self._stopped.is_set():
                return
            with self._ready:
                self._checked = True
                self._ready.notify_all()
        except StreamError as error:
            self._fail(error)
        except Exception as error:  # the decoder's own failure, in its words
            self._fail(StreamError(str(error) or type(error).__name__))

    def _fail(self, error: StreamError) -> None:
        with self._ready:
            self._error = error
            self._ready.notify_all()
