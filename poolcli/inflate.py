"""A plain PNG's image data, inflated on a thread of its own.

May import: the standard library only, so that the CLI can start inflating the one PNG it was
given (:func:`prefetch`) while NumPy, Pillow and the pipeline are still being imported;
:class:`poolcli.png.RowStream` then takes the inflater over (:func:`take`) and unfilters its
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
from typing import BinaryIO

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The PNGs whose rows stream, by their header's (bit depth, colour type): Pillow's raw mode for
# them, the Pillow mode they open as (poolcli's own: nothing to convert), and the Pillow mode and
# samples per pixel of the array its decoder writes (4 bytes per pixel for RGB and LA, as in
# Pillow's own images).  The one table both the prefetch and the decoder (images) go by.
STREAMED: dict[tuple[int, int], tuple[str, str, str, int]] = {
    (8, 0): ("L", "L", "L", 1), (8, 4): ("LA", "LA", "RGBA", 4), (8, 2): ("RGB", "RGB", "RGBX", 4),
    (8, 6): ("RGBA", "RGBA", "RGBA", 4), (16, 0): ("I;16B", "I;16", "I;16", 1)}
_SAMPLES = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel in the file


class StreamError(Exception):
    """The image data of a PNG is damaged or cut short; the message says how (Pillow's words)."""


def _open(source: str | bytes) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")


def idat_spans(source: str | bytes) -> list[tuple[int, int]] | None:
    """(offset, length) of each IDAT chunk's data, if the file is one plain image: chunks, then
    consecutive IDAT chunks, then IEND.  None for anything else (APNG, a palette or tRNS chunk,
    chunks after the image data, a layout cut short): those are read by Pillow as a whole.

    >>> ihdr, idat = b"IHDR" + bytes(13) + bytes(4), b"IDAT" + b"xy" + bytes(4)
    >>> data = SIGNATURE + struct.pack(">I", 13) + ihdr + struct.pack(">I", 2) + idat + bytes(4) + b"IEND" + bytes(4)
    >>> idat_spans(data)
    [(41, 2)]
    """
    with _open(source) as handle:
        return _spans(handle)


def _spans(handle: BinaryIO) -> list[tuple[int, int]] | None:
    size = handle.seek(0, io.SEEK_END)
    handle.seek(len(SIGNATURE))
    spans: list[tuple[int, int]] = []
    while True:
        head = handle.read(8)
        if len(head) < 8:
            return None
        length, kind = struct.unpack(">I4s", head)
        start = handle.tell()
        if start + length + 4 > size or kind in (b"acTL", b"PLTE", b"tRNS"):
            return None
        if kind == b"IDAT":
            spans.append((start, length))
        elif kind == b"IEND":
            return spans or None
        elif spans:  # a chunk after the image data (text, EXIF): Pillow reads those
            return None
        handle.seek(length + 4, io.SEEK_CUR)


class Inflater:
    """Inflates the IDAT ``spans`` of ``source`` on a daemon thread, at most ``expected`` bytes
    (what the header's rows hold: a stream that says more is cut there), holding at most
    :attr:`AHEAD` inflated bytes that nobody has taken yet.  :meth:`get` takes them in order."""

    PIECE = 1 << 18  # compressed bytes read at a time
    OUT = 1 << 20  # at most this many inflated bytes per piece
    AHEAD = 32 << 20

    def __init__(self, source: str | bytes | BinaryIO, spans: list[tuple[int, int]], expected: int):
        self.source, self.spans, self.expected = source, spans, expected
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
        except StreamError as failure:
            error = failure
        except zlib.error as failure:
            error = StreamError(f"broken data stream when reading image file ({failure})")
        except OSError as failure:
            error = StreamError(failure.strerror or str(failure))
        except MemoryError:
            error = StreamError("not enough memory to decode this image")
        except BaseException as failure:  # whatever it is, the reader must hear of it, not wait
            error = StreamError(f"{type(failure).__name__}: {failure}")
        finally:
            with self._changed:
                self._finished, self._error = True, error
                self._changed.notify_all()

    def _inflate(self) -> None:
        left = self.expected
        inflater = zlib.decompressobj()
        handle = _open(self.source) if isinstance(self.source, (str, bytes)) else self.source
        with handle:
            for offset, length in self.spans:
                handle.seek(offset)
                while length and left:
                    data = handle.read(min(length, self.PIECE))
                    if not data:
                        raise StreamError("image file is truncated")
                    length -= len(data)
                    while data and left:  # a piece inflates to at most OUT bytes: memory stays bounded
                        rows = inflater.decompress(data, min(left, self.OUT))
                        data = inflater.unconsumed_tail
                        left -= len(rows)
                        if rows and not self._put(rows):
                            return
                        if inflater.eof:
                            return
                if not left or inflater.eof:
                    return


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
        expected = height * (1 + width * samples * depth // 8)
        _prefetched[(status.st_dev, status.st_ino)] = (_identity(status), Inflater(handle, spans, expected))
        kept = True  # the inflater owns the file now, and closes it
    except (OSError, ValueError):
        return
    finally:
        if not kept:
            handle.close()


def take(source: str | bytes, spans: list[tuple[int, int]], expected: int) -> Inflater:
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
            if identity == _identity(status) and (inflater.spans, inflater.expected) == (spans, expected):
                return inflater
            inflater.close()
    return Inflater(source, spans, expected)
