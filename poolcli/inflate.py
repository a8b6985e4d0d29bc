"""A plain PNG's image data, inflated on a thread of its own.

May import: the standard library and ``errors`` (its exception base) only, so that the CLI can
start inflating the one PNG it was given (:func:`prefetch`) while NumPy, Pillow and the pipeline
are still being imported; :class:`poolcli.png.RowStream` then takes the inflater over (:func:`take`) and unfilters its
pieces.  Inflating is most of the time of decoding a PNG, and zlib's inflate is one thread.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
import zlib
from collections import deque
from collections.abc import Iterator
from typing import BinaryIO

from poolcli.errors import PoolcliError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The PNGs whose rows stream, by their header's (bit depth, colour type): Pillow's raw mode for
# them, the Pillow mode they open as (poolcli's own: nothing to convert), and the Pillow mode and
# samples per pixel of the array its decoder writes (4 bytes per pixel for RGB and LA, as in
# Pillow's own images).  The one table both the prefetch and the decoder (images) go by.
STREAMED: dict[tuple[int, int], tuple[str, str, str, int]] = {
    (8, 0): ("L", "L", "L", 1), (8, 4): ("LA", "LA", "RGBA", 4), (8, 2): ("RGB", "RGB", "RGBX", 4),
    (8, 6): ("RGBA", "RGBA", "RGBA", 4), (16, 0): ("I;16B", "I;16", "I;16", 1)}
_SAMPLES = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel in the file


class StreamError(PoolcliError):
    """The image data of a PNG is damaged or cut short; the message says how (Pillow's words)."""


class Damaged(StreamError):
    """The image data is not what the header promises (too little or too much, a cut or trailing
    stream, a wrong checksum); the message says so in the user's terms."""


def _open(source: str | bytes) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")


def idat_spans(source: str | bytes, plain: bool = True) -> list[tuple[int, int]] | None:
    """(offset, length) of each IDAT chunk's data, if the file is one plain image: chunks, then
    consecutive IDAT chunks, then IEND.  None for anything else (APNG, a palette or tRNS chunk,
    chunks after the image data, a layout cut short): those are read by Pillow as a whole.
    Without ``plain``, palettes, tRNS and APNG's acTL are allowed: None then says only that
    chunks follow the image data (or that the layout is cut short).

    >>> ihdr, idat = b"IHDR" + bytes(13) + bytes(4), b"IDAT" + b"xy" + bytes(4)
    >>> data = SIGNATURE + struct.pack(">I", 13) + ihdr + struct.pack(">I", 2) + idat + bytes(4) + b"IEND" + bytes(4)
    >>> idat_spans(data)
    [(41, 2)]
    """
    with _open(source) as handle:
        return _spans(handle, plain)


def _chunks(handle: BinaryIO) -> Iterator[tuple[bytes, int, int, int]]:
    """The chunks after the signature, in file order: (kind, data offset, declared length, file
    size), until the file ends (a chunk header cut short ends the walk)."""
    size = handle.seek(0, io.SEEK_END)
    handle.seek(len(SIGNATURE))
    while True:
        head = handle.read(8)
        if len(head) < 8:
            return
        length, kind = struct.unpack(">I4s", head)
        start = handle.tell()
        yield kind, start, length, size
        handle.seek(start + length + 4)


def _spans(handle: BinaryIO, plain: bool = True) -> list[tuple[int, int]] | None:
    spans: list[tuple[int, int]] = []
    for kind, start, length, size in _chunks(handle):
        if start + length + 4 > size or (plain and kind in (b"acTL", b"PLTE", b"tRNS")):
            return None
        if kind == b"IDAT":
            spans.append((start, length))
        elif kind == b"IEND":
            return spans or None
        elif spans:  # a chunk after the image data (text, EXIF): Pillow reads those
            return None
    return None


class Inflater:
    """Inflates the IDAT ``spans`` of ``source`` on a daemon thread (:func:`inflated`: exactly
    ``expected`` bytes, rows of ``row_bytes``, then a whole, checked zlib stream), holding at
    most :attr:`AHEAD` inflated bytes that nobody has taken yet.  :meth:`get` takes them in
    order, then says whether the whole stream was right (None, or :class:`StreamError`)."""

    PIECE = 1 << 18  # compressed bytes read at a time
    OUT = 1 << 20  # at most this many inflated bytes per piece
    AHEAD = 32 << 20

    def __init__(self, source: str | bytes | BinaryIO, spans: list[tuple[int, int]], expected: int,
                 row_bytes: int = 0):
        self.source, self.spans, self.expected, self.row_bytes = source, spans, expected, row_bytes
        self._changed = threading.Condition()
        self._pieces: deque[bytes] = deque()
        self._held = 0
        self._finished = False
        self._stopped = False
        self._error: StreamError | None = None
        self._thread = threading.Thread(target=self._run, name="poolcli-inflate", daemon=True)
        self._thread.start()

    def get(self) -> bytes | None:
        """The next inflated piece; None at the end (or once closed); raises :class:`StreamError`."""
        with self._changed:
            self._changed.wait_for(lambda: self._pieces or self._finished or self._stopped)
            if self._pieces and not self._stopped:
                piece = self._pieces.popleft()
                self._held -= len(piece)
                self._changed.notify_all()
                return piece
            if self._error is not None and not self._stopped:
                raise self._error
            return None

    def close(self) -> None:
        """Stop, drop what was inflated, and return once the thread has ended."""
        with self._changed:
            self._stopped = True
            self._pieces.clear()
            self._changed.notify_all()
        self._thread.join()

    def _put(self, piece: bytes) -> bool:
        with self._changed:
            self._changed.wait_for(lambda: self._held < self.AHEAD or self._stopped)
            if self._stopped:
                return False
            self._pieces.append(piece)
            self._held += len(piece)
            self._changed.notify_all()
            return True

    def _run(self) -> None:
        error: StreamError | None = None
        try:
            self._inflate()
        except BaseException as failure:  # whatever it is, the reader must hear of it, not wait
            error = _stream_error(failure)
        finally:
            with self._changed:
                self._finished, self._error = True, error
                self._changed.notify_all()

    def _inflate(self) -> None:
        handle = _open(self.source) if isinstance(self.source, (str, bytes)) else self.source
        with handle:
            for rows in inflated(handle, self.spans, self.expected, self.row_bytes):
                if not self._put(rows):
                    return


def _stream_error(failure: BaseException) -> StreamError:
    """Any failure to inflate, as a :class:`StreamError` in the user's terms."""
    if isinstance(failure, StreamError):
        return failure
    if isinstance(failure, zlib.error):
        return StreamError(f"broken data stream when reading image file ({failure})")
    if isinstance(failure, OSError):
        return StreamError(failure.strerror or str(failure))
    if isinstance(failure, MemoryError):
        return StreamError("not enough memory to decode this image")
    return StreamError(f"{type(failure).__name__}: {failure}")


def inflated(handle: BinaryIO, spans: list[tuple[int, int]], expected: int, row_bytes: int = 0) -> Iterator[bytes]:
    """The inflated image data of the IDAT ``spans`` of ``handle``, in pieces of at most
    :attr:`Inflater.OUT` bytes, checked whole: exactly ``expected`` bytes (what the header's rows
    hold; ``row_bytes``, if given, counts the rows in a complaint), then the end of the zlib stream
    with its Adler-32, then no more bytes.  Raises :class:`Damaged` (or :class:`StreamError` for
    a file shorter than its chunks) once something is wrong; a stream that says more than the
    rows is refused at its first extra byte, without inflating the rest.

    >>> stream = zlib.compress(bytes(7))
    >>> b"".join(inflated(io.BytesIO(stream), [(0, len(stream))], 7))
    b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00'
    >>> list(inflated(io.BytesIO(stream), [(0, len(stream) - 1)], 7))
    Traceback (most recent call last):
    ...
    poolcli.inflate.Damaged: the compressed image data is cut short (its end and checksum are missing)
    """
    left, ended = expected, False
    inflater = zlib.decompressobj()
    for offset, length in spans:
        handle.seek(offset)
        while length:
            data = handle.read(min(length, Inflater.PIECE))
            if not data:
                raise StreamError("image file is truncated")
            length -= len(data)
            if ended:
                raise Damaged("data after the end of the compressed image data")
            while data:  # a piece inflates to at most OUT bytes: memory stays bounded
                try:  # max_length 0 would mean no limit: 1 finds the first byte too many
                    rows = inflater.decompress(data, min(left, Inflater.OUT) or 1)
                except zlib.error as failure:
                    if "incorrect data check" in str(failure):
                        raise Damaged("the image data does not match its checksum (Adler-32)") from None
                    raise
                if len(rows) > left:
                    raise Damaged(f"the image data holds more than the {_amount(expected, row_bytes)} its header gives")
                data, ended = inflater.unconsumed_tail, inflater.eof
                left -= len(rows)
                if rows:
                    yield rows
                if ended:
                    if left:
                        raise Damaged(_ends_early(expected - left, expected, row_bytes))
                    if inflater.unused_data:
                        raise Damaged("data after the end of the compressed image data")
                    break
    if left:
        raise Damaged(_ends_early(expected - left, expected, row_bytes))
    if not ended:
        raise Damaged("the compressed image data is cut short (its end and checksum are missing)")


def _amount(size: int, row_bytes: int) -> str:
    """Bytes of rows in the user's terms: rows where a row's size is known, else bytes."""
    return f"{size // row_bytes} rows" if row_bytes else f"{size} bytes"


def _ends_early(size: int, expected: int, row_bytes: int) -> str:
    unit = "rows" if row_bytes else "bytes"
    done, total = (size // row_bytes, expected // row_bytes) if row_bytes else (size, expected)
    return f"the image data ends after {done} of {total} {unit}"


# Adam7's passes: (first column, first row, column step, row step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def verify(source: str | bytes) -> None:
    """Check the whole image data of a PNG another decoder read (Pillow stops inflating once it
    has the rows, and never checks what follows them nor the Adler-32): all IDAT chunks, in
    order, must inflate to exactly the rows the header describes, then end the zlib stream with
    the right checksum (:func:`inflated`).  Costs one more inflate of the image data.  What does
    not start as a PNG is left to that decoder's own complaint.

    Raises
    ------
    StreamError
        For image data that cannot be read; :class:`Damaged` for image data that is not what
        the header says.
    """
    try:
        with _open(source) as handle:
            head = handle.read(33)
            if len(head) < 33 or head[:8] != SIGNATURE or head[12:16] != b"IHDR":
                return
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
            samples = 1 if colour == 3 else _SAMPLES.get(colour, 0)
            if interlace:
                passes = [((width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy) for x0, y0, dx, dy in _ADAM7]
                sizes = [rows * (1 + (columns * samples * depth + 7) // 8) for columns, rows in passes
                         if columns and rows]
                expected, row_bytes = sum(sizes), 0
            else:
                row_bytes = 1 + (width * samples * depth + 7) // 8
                expected = height * row_bytes
            if samples:
                for _ in inflated(handle, _all_idat_spans(handle), expected, row_bytes):
                    pass
    except Exception as failure:
        raise _stream_error(failure) from None


def _all_idat_spans(handle: BinaryIO) -> list[tuple[int, int]]:
    """(offset, length) of every IDAT chunk's data up to IEND or the end of the file: the image
    data is their concatenation, wherever they are (a chunk cut short keeps what is there)."""
    spans: list[tuple[int, int]] = []
    for kind, start, length, size in _chunks(handle):
        if kind == b"IDAT":
            spans.append((start, max(0, min(length, size - start))))
        elif kind == b"IEND":
            return spans
        if start + length + 4 > size:
            return spans
    return spans


# Inflaters started by prefetch(), by the file's (device, inode): any spelling of its path finds it.
_prefetched: dict[tuple[int, int], tuple[tuple[int, ...], Inflater]] = {}


def _identity(status: os.stat_result) -> tuple[int, ...]:
    """What changes when a file is written again: size and both times (mtime can be set back)."""
    return status.st_size, status.st_mtime_ns, status.st_ctime_ns


def prefetch(path: str, max_pixels: int | None) -> None:
    """Start inflating ``path`` now if it is a plain PNG whose rows will stream (8-bit, or
    16-bit gray; not interlaced; no palette or transparency chunk) and within ``max_pixels``
    (0 or None: no limit).  Anything else, or any error, does nothing: the decoder reads the file
    as it would have anyway, and reports what is wrong with it.

    Only a regular file is opened (opening a FIFO would release its writer, and reading it would
    take the data), once, without waiting, and read only if it is still a regular file then."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # even opening a FIFO would release a writer waiting on it
            return
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        handle = os.fdopen(descriptor, "rb")  # owns the descriptor from here
    except (OSError, ValueError):
        return
    kept = False
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            return
        os.set_blocking(descriptor, True)
        head = handle.read(29)
        if len(head) < 29 or head[:8] != SIGNATURE or head[12:16] != b"IHDR":
            return
        width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
        if (depth, colour) not in STREAMED or interlace or not width or not height:
            return
        samples = _SAMPLES[colour]
        if max_pixels and width * height > max_pixels:
            return
        spans = _spans(handle)
        if spans is None:
            return
        row_bytes = 1 + width * samples * depth // 8
        _prefetched[(status.st_dev, status.st_ino)] = (_identity(status),
                                                       Inflater(handle, spans, height * row_bytes, row_bytes))
        kept = True  # the inflater owns the file now, and closes it
    except (OSError, ValueError):
        return
    finally:
        if not kept:
            handle.close()


def take(source: str | bytes, spans: list[tuple[int, int]], expected: int, row_bytes: int = 0) -> Inflater:
    """The inflater :func:`prefetch` started for ``source`` if it is the same file, unchanged,
    read the same way; else a new one."""
    if isinstance(source, str) and _prefetched:
        try:
            status = os.stat(source)
        except OSError:
            status = None
        entry = _prefetched.pop((status.st_dev, status.st_ino), None) if status is not None else None
        if entry is not None and status is not None:
            identity, inflater = entry
            if identity == _identity(status) and (inflater.spans, inflater.expected, inflater.row_bytes) == (
                    spans, expected, row_bytes):
                return inflater
            inflater.close()
    return Inflater(source, spans, expected, row_bytes)
