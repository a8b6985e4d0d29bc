"""Image files in and out: the only module that reads and writes images with Pillow (and
imagecodecs' PNG codec); ``explain.picture`` only draws explain's PNG with it.

May import: NumPy, Pillow, imagecodecs (reading 16-bit colour PNG only, on first use), ``engine``,
``errors``, ``formats``, ``frames``, ``inflate`` and ``png`` (which read plain PNGs as they are pooled and write
every single-frame PNG) and the standard library.

Decoding gives a :class:`Picture`: its frames (:class:`~poolcli.frames.Frame`, shape (H, W, C))
in one of the modes of :data:`poolcli.formats.MODES`, with the metadata worth keeping.  Encoding
writes pooled frames back with that metadata, into any format whose entry in
:data:`poolcli.formats.FORMATS` holds the mode.

Decompression bombs: before a frame or page is decoded, its size is checked against
``max_pixels`` (and the frames of a file together against ``FRAMES_BUDGET`` times that), the
number of frames against ``max_frames``, and the pixels its header claims against what a file of
its size can plausibly hold (:data:`PLAUSIBLE_PIXELS_PER_BYTE`).  Pillow's own guard stays on
during decoding, set to the same limit and turned from a warning into a refusal.

Damaged files: every exception of Pillow's decoders becomes an :class:`ImageError` saying what
is wrong with the file, with the library's text in parentheses; Pillow's log messages and what
C libraries (libtiff) print on the standard error go into that text instead of the terminal.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import mmap
import os
import re
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, TypeGuard

import numpy as np
from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from poolcli import engine, formats, inflate, pillowcore, png
from poolcli.errors import PoolcliError
from poolcli.formats import (  # re-exported: the names callers used before formats.py existed
    DEFAULT_COMPRESSION,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_QUALITY,
    EXTENSION_FORMATS,
    FORMAT_EXTENSIONS,
    FRAMES_BUDGET,
    READ_EXTENSIONS,
    describe_mode,
    format_for_extension,
    formats_that_hold,
)
from poolcli.frames import ArrayFrame, Frame

__all__ = [
    "DEFAULT_COMPRESSION",
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_QUALITY",
    "EXTENSION_FORMATS",
    "FORMAT_EXTENSIONS",
    "FORMAT_MODES",
    "MODE_DTYPES",
    "READ_EXTENSIONS",
    "SRGB_MODES",
    "ImageError",
    "LazyFrame",
    "Picture",
    "check_format",
    "decode",
    "decode_image",
    "describe_mode",
    "encode",
    "format_for_extension",
    "formats_that_hold",
    "profile_description",
    "storage_mode",
    "to_pillow",
]

MODE_DTYPES = {name: np.dtype(mode.dtype) for name, mode in formats.MODES.items()}
ALPHA_MODES = {name for name, mode in formats.MODES.items() if mode.alpha}
SRGB_MODES = {name for name, mode in formats.MODES.items() if mode.srgb}
FORMAT_MODES = {name: set(fmt.modes) for name, fmt in formats.FORMATS.items()}
# Pillow modes whose tobytes() holds one of poolcli's modes as it is (no conversion needed).
_RAW_DTYPES = {"I;16": np.dtype("<u2"), "I;16L": np.dtype("<u2"), "I;16B": np.dtype(">u2"),
               "I;16N": np.dtype("=u2")}
# Pixels are copied out of Pillow in strips of about this many bytes: Image.tobytes() of the
# whole image would briefly hold two more copies of it.
_STRIP_BYTES = 8 << 20

# The most pixels one byte of a file can plausibly describe, by format (and for TIFF, by
# compression).  Deflate and LZW reach about 1000:1 on bytes, and a bilevel pixel is an eighth
# of a byte, so about 8,000; twice that leaves a margin.  Formats and compressions that can
# describe any size in a few bytes (BMP's RLE skips, WebP, TIFF's fax codes, zstd) are not checked.
PLAUSIBLE_PIXELS_PER_BYTE = 16384
_PLAUSIBILITY_CHECKED = {"PNG", "GIF", "JPEG", "TIFF"}
_TIFF_CHECKED_COMPRESSIONS = {"raw", "packbits", "tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "jpeg",
                              "tiff_jpeg"}

_ORIENTATION = ExifTags.Base.Orientation
# One transpose per EXIF orientation (as Pillow's ImageOps.exif_transpose).
_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# The same transposes on (H, W, C) arrays, for pixels Pillow cannot hold (16-bit colour).
_ARRAY_TRANSPOSES: dict[Image.Transpose, Callable[[np.ndarray], np.ndarray]] = {
    Image.Transpose.FLIP_LEFT_RIGHT: lambda a: a[:, ::-1],
    Image.Transpose.ROTATE_180: lambda a: a[::-1, ::-1],
    Image.Transpose.FLIP_TOP_BOTTOM: lambda a: a[::-1],
    Image.Transpose.TRANSPOSE: lambda a: a.transpose(1, 0, 2),
    Image.Transpose.ROTATE_270: lambda a: np.rot90(a, -1),
    Image.Transpose.TRANSVERSE: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    Image.Transpose.ROTATE_90: lambda a: np.rot90(a, 1),
}
# TIFF tags that describe the pixel layout of the file they came from (a TIFF's "EXIF" is its
# whole first IFD): written again, they would contradict the pooled image.
_B = ExifTags.Base
_LAYOUT_TAGS = {int(tag) for tag in (
    _B.NewSubfileType, _B.SubfileType, _B.ImageWidth, _B.ImageLength, _B.BitsPerSample, _B.Compression,
    _B.PhotometricInterpretation, _B.FillOrder, _B.StripOffsets, _B.SamplesPerPixel, _B.RowsPerStrip,
    _B.StripByteCounts, _B.XResolution, _B.YResolution, _B.PlanarConfiguration, _B.ResolutionUnit, _B.Predictor,
    _B.ColorMap, _B.TileWidth, _B.TileLength, _B.TileOffsets, _B.TileByteCounts, _B.ExtraSamples, _B.SampleFormat,
    _B.SMinSampleValue, _B.SMaxSampleValue)} | {
    292, 293,  # T4Options, T6Options: fax compression
    346, 347, 512, 513, 514, 515, 517, 518, 519, 520, 521,  # Indexed, JPEG tables and old-style JPEG
    529, 530, 531, 532,  # YCbCr coefficients, subsampling, positioning; ReferenceBlackWhite
    # GeoTIFF's placement and GDAL's statistics/nodata describe the input's pixel grid: a GeoTIFF
    # written as a TIFF streams and gets them transformed (poolcli.geo); elsewhere they would lie.
    33550, 33922, 34264, 34735, 34736, 34737, 42112, 42113}
# Image descriptions that libraries write to describe a file's layout (tifffile's {"shape": ...},
# ImageJ's, OME-XML): stale once the pixels are pooled.
_LAYOUT_DESCRIPTION = re.compile(r'\s*(\{\s*"shape"\s*:|ImageJ=|<\?xml[^>]*>\s*<OME\b|<OME\b)')
_XMP_TIFF_TAG = 700
# PNG raw modes of 16-bit colour (and gray with alpha), which Pillow would read as 8-bit: read
# and written with imagecodecs.
_PNG_16BIT_COLOUR = {"LA;16B": "LA;16", "RGB;16B": "RGB;16", "RGBA;16B": "RGBA;16"}


class ImageError(PoolcliError):
    """A file that cannot be read or written as an image; the message names the cause."""


class LazyFrame:
    """A frame whose pixels stay inside Pillow until asked for, in strips of rows.

    Pooling reads it strip by strip (``rows``), so a large image is never held twice: once as
    Pillow's decoded image and once as an array.  ``close()`` frees Pillow's copy.
    """

    def __init__(self, image: Image.Image, mode: str):
        width, height = image.size
        self.image = image
        self.mode = mode
        self.dtype = MODE_DTYPES[mode]
        self.shape = (height, width, len(image.getbands()))
        self._lock = threading.Lock()  # Pillow images are not documented as thread-safe
        self._whole: np.ndarray | None = None

    def rows(self, top: int, bottom: int) -> np.ndarray:
        with self._lock:
            if self._whole is None and math.prod(self.shape) * self.dtype.itemsize <= _STRIP_BYTES:
                # A small image is copied out whole, once: a strip costs a crop and a copy each
                # (1.9 ms of a 1024x768 photo's pooling against 0.5 ms for one tobytes, measured).
                self._whole = _strip(self.image, 0, self.shape[0])
            strip = self._whole[top:bottom] if self._whole is not None else _strip(self.image, top, bottom)
        return strip if strip.dtype == self.dtype else strip.astype(self.dtype)

    def to_array(self) -> np.ndarray:
        return _pixels(self.image, self.mode)

    def planes(self) -> engine.RowSource:
        return _row_planes(self)

    def value_range(self) -> tuple[float, float]:
        """(min, max) over all channels, from Pillow, without copying the pixels out."""
        extrema = self.image.getextrema()
        pairs = extrema if isinstance(extrema[0], tuple) else (extrema,)
        return min(p[0] for p in pairs), max(p[1] for p in pairs)

    def close(self) -> None:
        self._whole = None
        self.image.close()


class StreamedFrame:
    """A PNG frame still being decoded (:class:`poolcli.png.RowStream`) into an array of Pillow's
    own pixel layout (RGB as RGBX, gray with alpha as L, L, L, A): rows are views of it, read as
    soon as the decoder has written them, without a copy."""

    def __init__(self, stream: png.RowStream, buffer: np.ndarray, mode: str, pages: mmap.mmap | None = None):
        self._stream, self._buffer, self.mode, self._pages = stream, buffer, mode, pages
        self._given_back = 0  # bytes at the start of the buffer whose pages went back to the system
        self.dtype = MODE_DTYPES[mode]
        channels = formats.MODES[mode].channels
        self.shape = (buffer.shape[0], buffer.shape[1], channels)
        self._channels = slice(0, channels) if channels != 2 else [0, 3]  # where Pillow keeps each band

    def rows(self, top: int, bottom: int) -> np.ndarray:
        _wait_for_rows(self._stream, bottom)
        strip = self._buffer[top:bottom]
        strip = strip[..., self._channels] if strip.ndim == 3 else strip[..., None]
        return strip if strip.dtype == self.dtype else strip.astype(self.dtype)

    def to_array(self) -> np.ndarray:
        array = np.ascontiguousarray(self.rows(0, self.shape[0]))
        self.verify()
        return array

    def planes(self) -> engine.RowSource:
        return _row_planes(self)

    def value_range(self) -> tuple[float, float]:
        array = self.rows(0, self.shape[0])
        self.verify()
        return (array.min().item(), array.max().item()) if array.size else (0, 0)

    def release(self, rows: int) -> None:
        """Rows above ``rows`` will not be read again (the caller's promise): the decoder keeps
        only a band ahead of them, and the memory of those it has written goes back to the
        system, so that a PNG's memory does not grow with its height.  Reading a released row
        afterwards gives zeros."""
        self._stream.release(rows)
        if self._pages is None:
            return
        row_bytes = self._buffer.strides[0]
        done = min(rows, self._stream.rows - 1)  # rows the decoder has finished writing
        end = done * row_bytes // mmap.PAGESIZE * mmap.PAGESIZE
        if end > self._given_back:
            with contextlib.suppress(OSError, ValueError):
                self._pages.madvise(mmap.MADV_DONTNEED, self._given_back, end - self._given_back)
                self._given_back = end

    def verify(self) -> None:
        """Wait until the rest of the image data is read and checked; raise ImageError if damaged."""
        try:
            self._stream.finish()
        except png.StreamError as error:
            raise _stream_error(error) from None

    def close(self) -> None:
        self._stream.close()  # its decoder writes into the buffer: stop it first


class PaddedFrame:
    """RGB pixels as Pillow lays them out, four bytes a pixel (RGBX), in an array of ours: the
    frame is the first three channels.  NumPy turns four bytes into three several times slower
    than Pillow's ``tobytes`` (3.6 ms against 0.5 ms for a 1024x768 photo, measured), so neither
    copies it: :func:`poolcli.pipeline.pool_picture` pools the four channels (the fourth is
    dropped after), and :func:`encode` hands the padded rows back to Pillow as they are."""

    def __init__(self, padded: np.ndarray):
        self.padded = padded  # (H, W, 4), C-contiguous
        self.shape = (*padded.shape[:2], 3)
        self.dtype = padded.dtype

    def rows(self, top: int, bottom: int) -> np.ndarray:
        return self.padded[top:bottom, :, :3]

    def to_array(self) -> np.ndarray:
        return self.padded[..., :3]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.to_array() if dtype is None else self.to_array().astype(dtype)

    def planes(self) -> np.ndarray:
        return self.to_array().transpose(2, 0, 1)

    def value_range(self) -> tuple[float, float]:
        array = self.to_array()
        return (array.min().item(), array.max().item()) if array.size else (0, 0)

    def close(self) -> None:
        """Nothing to free: the array is this process's own memory."""


def _row_planes(frame: LazyFrame | StreamedFrame) -> engine.RowSource:
    """A frame that reads rows on demand, as (C, H, W) planes the engine reads strip by strip."""
    height, width, channels = frame.shape
    return engine.RowSource((channels, height, width), frame.dtype,
                            lambda top, bottom: frame.rows(top, bottom).transpose(2, 0, 1))


@dataclass
class Picture:
    """Decoded pixels and the metadata that survives pooling."""

    frames: list[Frame]  # each (H, W, C)
    mode: str  # the pooled mode, a key of formats.MODES
    source_mode: str  # the file's own mode, before conversion
    format: str | None  # the file's format (PNG, JPEG, ...)
    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    durations: list[int] | None = None  # per frame, milliseconds
    loop: int | None = None
    orientation: int | None = None  # the EXIF orientation that was applied (2-8), if any

    @property
    def has_alpha(self) -> bool:
        return self.mode in ALPHA_MODES

    def with_frames(self, frames: Sequence[np.ndarray | PaddedFrame], mode: str | None = None) -> Picture:
        return replace(self, frames=[f if isinstance(f, PaddedFrame) else ArrayFrame(f) for f in frames],
                       mode=mode or self.mode)

    def verify(self) -> None:
        """Raise ImageError unless the decoders read and checked all of the file's image data.

        A streamed PNG (:class:`StreamedFrame`) is pooled from the rows the windows need, which
        may not be all of them: call this once pooling is done and before the output counts, to
        wait for the rest of its image data, the end of the zlib stream and its checksum.  Other
        frames were checked whole when decoded."""
        for frame in self.frames:
            if isinstance(frame, StreamedFrame):
                frame.verify()

    def close(self) -> None:
        """Free pixels still held by a decoder (lazy frames)."""
        for frame in self.frames:
            frame.close()

    def lost_metadata(self, file_format: str) -> list[str]:
        """The metadata of this picture that ``file_format`` cannot store."""
        return formats.FORMATS[file_format].loses(bool(self.icc_profile), bool(self.exif), bool(self.xmp),
                                                  bool(self.dpi))


def _strip(img: Image.Image, top: int, bottom: int) -> np.ndarray:
    """Rows top:bottom of ``img`` as a read-only (rows, W, C) array.

    ``tobytes`` of a crop is about eight times faster than ``np.asarray`` of it (measured on a
    4096x4096 RGB image), and works strip by strip without a second copy of the whole image.
    """
    width = img.size[0]
    part = img if (top, bottom) == (0, img.size[1]) else img.crop((0, top, width, bottom))
    dtype = _RAW_DTYPES.get(img.mode) or MODE_DTYPES[img.mode].newbyteorder("=")
    flat = np.frombuffer(part.tobytes(), dtype=dtype)
    return flat.reshape(bottom - top, width, -1)


def _pixels(img: Image.Image, mode: str) -> np.ndarray:
    """Pixels of ``img`` (already in ``mode``) as a writable (H, W, C) array in native byte order."""
    width, height = img.size
    dtype = MODE_DTYPES[mode]
    array = np.empty((height, width, len(img.getbands())), dtype=dtype)
    rows = max(1, _STRIP_BYTES // max(1, width * array.shape[2] * dtype.itemsize))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        array[top:bottom] = _strip(img, top, bottom)
    return array


# --------------------------------------------------------------------------- limits and library output


@dataclass
class _Decoding:
    """What one decode has learnt so far: for the limits, and for a reason if it fails."""

    file_size: int
    max_pixels: int | None
    max_frames: int | None
    format: str | None = None
    frame: int = 0  # the frame or page being read (0-based)
    frames: int = 1  # how many the file has
    library: list[str] = field(default_factory=list)  # what Pillow logged and C libraries printed

    def what(self) -> str:
        return f"frame {self.frame + 1}" if self.frames > 1 else "image"

    def check(self, size: tuple[int, int], compression: str | None = None) -> None:
        """Refuse a frame or page of ``size`` (W, H) before it is decoded."""
        pixels = size[0] * size[1]
        bound = self._plausible_bound(compression)
        if bound is not None and pixels > bound:
            raise ImageError(
                f"damaged {self.format} file: {self.what()} claims {size[0]}x{size[1]} = {pixels} pixels, more than "
                f"a file of {self.file_size} bytes can hold")
        if self.max_pixels and pixels > self.max_pixels:
            raise ImageError(
                f"{self.what()} size ({size[0]}x{size[1]} = {pixels} pixels) exceeds the limit of {self.max_pixels} "
                "pixels (decompression bomb protection); raise it with --max-pixels N (0 removes it) "
                "if you trust this file")

    def check_count(self, frames: int) -> None:
        """Refuse a file of too many frames, before their sizes are read."""
        self.frames = frames
        if self.max_frames and frames > self.max_frames:
            raise ImageError(
                f"{frames} frames exceed the limit of {self.max_frames} frames (decompression bomb protection); "
                "raise it with --max-frames N (0 removes it) if you trust this file")

    def check_total(self, sizes: list[tuple[int, int]]) -> None:
        """Refuse a file whose frames together are too large."""
        total = sum(w * h for w, h in sizes)
        if self.max_pixels and total > FRAMES_BUDGET * self.max_pixels:
            raise ImageError(
                f"{len(sizes)} frames of {total} pixels together exceed the limit of "
                f"{FRAMES_BUDGET * self.max_pixels} pixels for a whole file ({FRAMES_BUDGET} x --max-pixels; "
                "decompression bomb protection); raise --max-pixels (0 removes it) if you trust this file")

    def _plausible_bound(self, compression: str | None) -> int | None:
        if self.format not in _PLAUSIBILITY_CHECKED or not self.file_size:  # size unknown: a device, a pipe
            return None
        if self.format == "TIFF" and compression not in _TIFF_CHECKED_COMPRESSIONS:
            return None
        return max(1, self.file_size) * PLAUSIBLE_PIXELS_PER_BYTE

    def pillow_limit(self) -> int | None:
        """Pillow's own per-frame guard: the pixel limit, or the plausible bound where that is lower
        and does not depend on a page's compression (not TIFF)."""
        bounds = [b for b in (self.max_pixels, self._plausible_bound(None)) if b]
        return min(bounds) if bounds else None


def check_pixel_limit(size: tuple[int, int], max_pixels: int | None) -> None:
    """Refuse an image of ``size`` (W, H) above ``max_pixels`` (the decompression-bomb limit)."""
    _Decoding(file_size=0, max_pixels=max_pixels, max_frames=None).check(size)


def claimed_size(data: bytes) -> tuple[int, int] | None:
    """The (W, H) an image header at the start of ``data`` claims, or None while it cannot be read
    (too few bytes yet, or not an image)."""
    with _LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # the size is judged by the caller against --max-pixels
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(data)) as img:
                    return img.size
        except Exception:  # any parser failure here only means "not enough bytes yet"
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = saved


_LIMIT_LOCK = threading.RLock()  # Image.MAX_IMAGE_PIXELS is global: one decode sets it at a time


@contextlib.contextmanager
def _pillow_guard(decoding: _Decoding) -> Iterator[Callable[[], None]]:
    """Pillow's bomb guard set for this decode and restored after; its warnings (a frame over
    the limit included) become errors or are ignored; its log, and imagecodecs' (libpng's
    warnings), go into ``decoding.library``.

    Yields a function that re-applies the limit once the file's format is known."""
    saved = Image.MAX_IMAGE_PIXELS
    loggers = [logging.getLogger(name) for name in ("PIL", "imagecodecs")]
    handler = _ListHandler(decoding.library)
    propagate = [logger.propagate for logger in loggers]

    def apply() -> None:
        Image.MAX_IMAGE_PIXELS = decoding.pillow_limit()

    with _LIMIT_LOCK, warnings.catch_warnings():
        # Pillow warns about damaged metadata it skips: the one-line error or the pixels say enough.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for logger in loggers:
            logger.addHandler(handler)
            logger.propagate = False
        apply()
        try:
            yield apply
        finally:
            Image.MAX_IMAGE_PIXELS = saved
            for logger, kept in zip(loggers, propagate, strict=True):
                logger.removeHandler(handler)
                logger.propagate = kept


class _ListHandler(logging.Handler):
    def __init__(self, lines: list[str]):
        super().__init__(logging.WARNING)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.lines.append(record.getMessage())


_STDERR_LOCK = threading.RLock()  # file descriptor 2 is the process's: one capture at a time
_sink: tuple[int, BinaryIO] | None = None  # (pid, file): reused, as creating a file costs more than a decode


def _anonymous_file() -> BinaryIO:
    """A file with no name that lives as long as the process: in memory where Linux offers it
    (importing tempfile would cost a small run more than its decode)."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        with contextlib.suppress(OSError):
            return os.fdopen(memfd_create("poolcli-stderr", getattr(os, "MFD_CLOEXEC", 0)), "w+b")
    import tempfile

    return tempfile.TemporaryFile()


def _stderr_sink() -> BinaryIO:
    global _sink
    if _sink is None or _sink[0] != os.getpid():  # a forked worker must not share its parent's file offset
        _sink = (os.getpid(), _anonymous_file())
    sink = _sink[1]
    sink.seek(0)
    sink.truncate()
    return sink


@contextlib.contextmanager
def _captured_stderr(lines: list[str]) -> Iterator[None]:
    """What C libraries write to file descriptor 2 during the block, into ``lines``.

    libtiff prints its errors there itself; poolcli's stderr must carry one line per failure.
    Terminal output written meanwhile by this process (a progress bar: escape codes or carriage
    returns) is passed on to the real stderr afterwards."""
    with _STDERR_LOCK:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to keep clean
            yield
            return
        try:
            sink = _stderr_sink()
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                sink.seek(0)
                text = sink.read().decode("utf-8", "replace")
                for line in text.splitlines(keepends=True):
                    if "\x1b" in line or "\r" in line:
                        os.write(2, line.encode())
                    elif line.strip():  # libtiff names the file Pillow gave it, never the user's
                        lines.append(line.strip().replace("tempfile.tif: ", ""))
        finally:
            os.close(saved)


# --------------------------------------------------------------------------- decoding


def decode(source: str | bytes, *, auto_orient: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS,
           max_frames: int | None = DEFAULT_MAX_FRAMES, lazy: bool = False) -> Picture:
    """Read an image file (a path, or the file's bytes) into a :class:`Picture`.

    Every frame of an animation or multi-page file is decoded, each after its size was checked
    (see the module's notes on bombs; ``max_pixels`` or ``max_frames`` of 0 or None remove a
    limit).  EXIF orientation is applied (unless ``auto_orient`` is false) and removed from the
    kept EXIF and XMP.  Modes become poolcli's (:func:`poolcli.formats.pooled_mode`); 16-bit
    colour PNG stays 16-bit.  With ``lazy``, a single-frame image stays in Pillow as a
    :class:`LazyFrame` (call ``Picture.close()`` when done).

    Raises
    ------
    ImageError
        For anything that is not a readable image, with the reason.

    Examples
    --------
    >>> decode(b"plain text")
    Traceback (most recent call last):
    ...
    poolcli.images.ImageError: not an image file Pillow can read
    """
    decoding = _Decoding(file_size=0, max_pixels=max_pixels or None, max_frames=max_frames or None)
    try:
        decoding.file_size = len(source) if isinstance(source, bytes) else os.path.getsize(source)
        with _captured_stderr(decoding.library), _pillow_guard(decoding) as reapply:
            return _open_and_decode(source, decoding, reapply, auto_orient, lazy)
    except ImageError:
        raise
    except Exception as error:  # every decoder failure is a property of the file: say which
        decoding.format = decoding.format or sniffed(source)
        raise ImageError(_reason(error, decoding)) from None


def decode_image(img: Image.Image, *, auto_orient: bool = True) -> Picture:
    """A :class:`Picture` of an image already open in Pillow (every frame, as :func:`decode`; no
    size limits: the pixels are already in memory or the caller opened the file).

    Raises
    ------
    ImageError
        For pixels poolcli cannot pool.
    """
    decoding = _Decoding(file_size=0, max_pixels=None, max_frames=None, format=img.format)
    source: str | bytes = getattr(img, "filename", "") or b""  # read again only for 16-bit colour PNG
    try:
        with _captured_stderr(decoding.library):
            picture, _ = _decode_open(img, source, decoding, auto_orient, lazy=False)
        return picture
    except ImageError:
        raise
    except Exception as error:
        raise ImageError(_reason(error, decoding)) from None


def is_pillow_image(value: object) -> TypeGuard[Image.Image]:
    """Whether ``value`` is a ``PIL.Image.Image`` (for callers that do not import Pillow)."""
    return isinstance(value, Image.Image)


def to_pillow(picture: Picture, dpi_scale: tuple[float, float] = (1.0, 1.0)) -> Image.Image:
    """The first frame of ``picture`` as a Pillow image, with its ICC profile, EXIF, XMP and DPI
    (scaled by ``dpi_scale``, x and y) in ``info``, where Pillow's encoders look for them.

    Raises
    ------
    ImageError
        For 16-bit colour, which no Pillow mode holds.
    """
    if picture.mode not in MODE_DTYPES or picture.mode in _PNG_16BIT_COLOUR.values():
        raise ImageError(f"{describe_mode(picture.mode)} pixels have no Pillow mode: write a file instead "
                         "(poolcli.pool_file)")
    img = _frame_image(picture.frames[0].to_array(), picture.mode).copy()  # a copy owns its pixels
    for key, value in (("icc_profile", picture.icc_profile), ("exif", picture.exif), ("xmp", picture.xmp)):
        if value:
            img.info[key] = value
    if picture.dpi:
        img.info["dpi"] = (picture.dpi[0] / dpi_scale[0], picture.dpi[1] / dpi_scale[1])
    return img


def _open_and_decode(source: str | bytes, decoding: _Decoding, reapply: Callable[[], None], auto_orient: bool,
                     lazy: bool) -> Picture:
    stream: BinaryIO | str = io.BytesIO(source) if isinstance(source, bytes) else source
    pillowcore.skip_preinit(sniffed(source) or "")
    img = Image.open(stream)
    try:
        decoding.format = img.format
        reapply()  # the format is known: Pillow's guard also enforces the plausible size
        picture, keep_open = _decode_open(img, source, decoding, auto_orient, lazy)
    except BaseException:
        img.close()
        raise
    if not keep_open:
        img.close()
    return picture


def _claimed_sizes(img: Image.Image, n_frames: int) -> list[tuple[tuple[int, int], str | None]]:
    """(size, compression) of every frame as its header claims, without decoding any.

    Only TIFF pages are visited (a page's seek reads its tags); the frames of an animation
    share the first frame's canvas (a larger frame is caught when it is reached)."""
    if img.format != "TIFF" or n_frames == 1:
        return [(img.size, img.info.get("compression"))] * n_frames
    sizes = []
    for index in range(n_frames):
        img.seek(index)
        sizes.append((img.size, img.info.get("compression")))
    img.seek(0)
    return sizes


def _decode_open(img: Image.Image, source: str | bytes, decoding: _Decoding, auto_orient: bool,
                 lazy: bool) -> tuple[Picture, bool]:
    """The pixels and metadata of an open image; true if a lazy frame still reads from ``img``."""
    n_frames = getattr(img, "n_frames", 1)
    decoding.check_count(n_frames)
    claimed = _claimed_sizes(img, n_frames)
    for index, (size, compression) in enumerate(claimed):
        decoding.frame = index
        decoding.check(size, compression)
    decoding.check_total([size for size, _ in claimed])
    decoding.frame = 0
    tile = getattr(img, "tile", None)  # read before getexif(), which loads the pixels
    raw = tile[0].args if img.format == "PNG" and tile else None
    streamed = _png_stream(img, source) if lazy and n_frames == 1 else None
    if streamed is not None:
        try:
            return _streamed_picture(img, streamed, auto_orient), False
        except BaseException:
            streamed.close()
            raise
    with _whole_png_checked(img, source):
        return _decode_whole(img, source, decoding, auto_orient, lazy, n_frames, raw)


def _decode_whole(img: Image.Image, source: str | bytes, decoding: _Decoding, auto_orient: bool, lazy: bool,
                  n_frames: int, raw: object) -> tuple[Picture, bool]:
    """:func:`_decode_open` for every frame that Pillow (or imagecodecs) decodes whole."""
    png16 = _PNG_16BIT_COLOUR.get(raw) if n_frames == 1 and isinstance(raw, str) else None
    if png16 and isinstance(source, str):
        # imagecodecs decodes bytes: read them once, and walk the chunks in memory (a walk of the
        # file seeks past every IDAT chunk, a read each, which took 0.1 s of a 4096² image's 1.4)
        with open(source, "rb") as handle:
            source = handle.read()
    if png16 and source and "exif" not in img.info and inflate.idat_spans(source, plain=False):
        # Its pixels come from imagecodecs, and no chunk follows its image data: nothing Pillow
        # would find by decoding it (getexif() would, to look for a late eXIf chunk).
        pillowcore.forget_pixels(img)
    orientation = _orientation(img) if auto_orient else None
    if png16 and isinstance(source, bytes):  # always, once read above
        return _decode_png16(img, source, png16, orientation), False

    if lazy and n_frames == 1 and img.format == "JPEG" and not orientation \
            and formats.pooled_mode(img.mode, False) == img.mode:
        decoded = pillowcore.load_into(img)  # into an array of ours: pooled without a copy out of Pillow
        if decoded is not None:
            decoded_frame: Frame = PaddedFrame(decoded) if img.mode == "RGB" else ArrayFrame(decoded)
            return Picture(frames=[decoded_frame], mode=img.mode, source_mode=img.mode, format=img.format,
                           **_metadata(img, None)), False
    frames_img, durations, transparency = [], [], False
    for index in range(n_frames):
        decoding.frame = index
        if index:
            img.seek(index)
        decoding.check(img.size, img.info.get("compression"))  # a GIF frame may grow the canvas
        img.load()
        durations.append(int(img.info.get("duration", 0) or 0))
        transparency = transparency or img.mode in ("PA", "RGBA", "LA", "La", "RGBa") or "transparency" in img.info
        frames_img.append(img.copy() if n_frames > 1 else img)
    decoding.frame = 0
    mode = formats.pooled_mode(frames_img[0].mode, transparency)
    if img.format == "PNG" and mode in _KEYED_ALPHA and any(_keyed(frame) for frame in frames_img):
        mode = _KEYED_ALPHA[mode]  # a tRNS chunk: one gray value or colour is transparent
    frames: list[Frame] = []
    for frame in frames_img:
        if mode == "LA;16":  # no Pillow mode holds it: the alpha is made here
            array = _with_keyed_alpha(_pixels(frame, "I;16"), frame.info.get("transparency"))
            if orientation:
                array = _ARRAY_TRANSPOSES[_TRANSPOSES[orientation]](array)
            frames.append(ArrayFrame(np.ascontiguousarray(array)))
            continue
        if raw in _SCALED_GRAY and _keyed(frame):  # Pillow scales the pixels up, not the transparent value
            frame.info["transparency"] *= _SCALED_GRAY[raw]
        converted = frame if frame.mode == mode or frame.mode in _RAW_DTYPES else frame.convert(mode)
        if orientation:
            converted = converted.transpose(_TRANSPOSES[orientation])
        if lazy and n_frames == 1:
            frames.append(LazyFrame(converted, mode))
            continue
        frames.append(ArrayFrame(_pixels(converted, mode)))
        if converted is not frame:
            converted.close()
    if len({f.shape for f in frames}) > 1:
        raise ImageError("frames of different sizes are not supported")
    picture = Picture(frames=frames, mode=mode, source_mode=img.mode, format=img.format,
                      durations=durations if n_frames > 1 else None, loop=img.info.get("loop"),
                      orientation=orientation, **_metadata(img, orientation))
    keep_open = any(isinstance(f, LazyFrame) and f.image is img for f in frames)
    return picture, keep_open


@contextlib.contextmanager
def _whole_png_checked(img: Image.Image, source: str | bytes) -> Iterator[None]:
    """Check a PNG's whole image data (:func:`poolcli.inflate.verify`: Pillow reads only the
    rows, and checks neither the end of the zlib stream nor its checksum) on a thread of its
    own while the block decodes it; raise ImageError after the block if it is damaged."""
    if img.format != "PNG" or not source:
        yield
        return
    failures: list[png.StreamError] = []

    def check() -> None:
        try:
            inflate.verify(source)
        except png.StreamError as error:
            failures.append(error)

    thread = threading.Thread(target=check, name="poolcli-png-check", daemon=True)
    thread.start()
    try:
        yield
    except Exception as error:  # the check's words are more exact than the decoder's, if it failed too
        thread.join()
        if isinstance(error, ImageError) or not failures or not isinstance(failures[0], inflate.Damaged):
            raise
        raise _stream_error(failures[0]) from None
    thread.join()
    if failures:
        raise _stream_error(failures[0])


# PNG modes whose transparency is one value or colour (a tRNS chunk), and the mode with alpha
# they are pooled in, as libpng expands them (Pillow's convert does too, but has no mode for
# 16-bit gray with alpha).
_KEYED_ALPHA = {"L": "LA", "RGB": "RGBA", "I;16": "LA;16"}
# PNG raw modes of gray below 8 bits, which Pillow scales up to 8 bits, but not their tRNS value.
_SCALED_GRAY = {"L;2": 85, "L;4": 17}


def _keyed(frame: Image.Image) -> bool:
    """Whether ``frame`` has one transparent value (gray) or colour (RGB) in ``info``."""
    value = frame.info.get("transparency")
    return isinstance(value, tuple) if frame.mode == "RGB" else isinstance(value, int)


def _with_keyed_alpha(array: np.ndarray, transparent: object) -> np.ndarray:
    """(H, W, C) 16-bit pixels with an alpha channel after them: 0 where every sample equals the
    ``transparent`` value (an int, or a tuple of one per channel), 65535 elsewhere.

    >>> _with_keyed_alpha(np.array([[[5], [6]]], np.uint16), 6)[..., 1].tolist()
    [[65535, 0]]
    """
    key = np.array(transparent if isinstance(transparent, tuple) else (transparent,), dtype=np.int64)
    if key.shape != (array.shape[2],):
        alpha = np.full(array.shape[:2] + (1,), 65535, dtype=np.uint16)
    else:
        alpha = np.where((array == key).all(axis=2, keepdims=True), 0, 65535).astype(np.uint16)
    return np.concatenate([array, alpha], axis=2)


# PNG raw modes whose rows stream while they are pooled (png.RowStream) -> (the Pillow mode
# they open as, the mode and samples per pixel of the array the decoder writes): inflate.STREAMED.
_STREAMED_PNG = {raw: (mode, mapped, samples) for raw, mode, mapped, samples in inflate.STREAMED.values()}


def _png_stream(img: Image.Image, source: str | bytes) -> StreamedFrame | None:
    """Start decoding a plain, non-interlaced PNG in the background (see :mod:`poolcli.png`), or
    None for any other file, which Pillow decodes as a whole.

    Pillow's own decoder unfilters the rows (``Image._getdecoder``, as ``ImageFile.load`` uses
    it) straight into a NumPy array that Pillow maps (``Image.frombuffer``), so that pooling
    reads rows without copying them out of Pillow.  ``img`` keeps only its metadata: its tile
    is emptied so that nothing (``getexif`` included) decodes it a second time."""
    if not isinstance(img, ImageFile.ImageFile):
        return None
    tile = img.tile
    if img.format != "PNG" or len(tile) != 1 or tile[0][0] != "zip" or not isinstance(tile[0][3], str):
        return None
    raw = tile[0][3]
    if raw not in _STREAMED_PNG or _STREAMED_PNG[raw][0] != img.mode or img.info.get("interlace") \
            or not pillowcore.PRIVATE:
        return None
    spans = png.idat_spans(source)  # None also for a palette or tRNS chunk (transparency)
    if spans is None or spans[0][0] != tile[0][2]:
        return None
    width, height = img.size
    mode, mapped, samples = _STREAMED_PNG[raw]
    dtype = np.dtype("<u2") if mode == "I;16" else np.dtype(np.uint8)  # Pillow's I;16 is little-endian
    shape = (height, width, samples) if samples > 1 else (height, width)
    # Anonymous pages of our own, so that rows pooled already can be given back (StreamedFrame.release).
    # Private: MADV_DONTNEED then frees them (a shared mapping's pages would stay in memory).
    private = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
    pages = mmap.mmap(-1, max(1, math.prod(shape) * dtype.itemsize), flags=private) \
        if hasattr(mmap, "MADV_DONTNEED") and hasattr(mmap, "MAP_ANONYMOUS") else None
    buffer = np.frombuffer(pages, dtype=dtype, count=math.prod(shape)).reshape(shape) if pages is not None \
        else np.empty(shape, dtype=dtype)
    decoder = pillowcore.row_decoder(mode, "zip", raw, buffer, mapped)
    if decoder is None or not pillowcore.forget_pixels(img):
        return None

    def feed(data: bytes) -> bool:
        consumed, status = decoder.decode(data)
        if status < 0:  # Pillow's words for it, as ImageFile.load would raise them
            raise pillowcore.decoder_error(status)
        if consumed < 0:  # every row decoded
            decoder.cleanup()
            return True
        return False

    row_bytes = 1 + width * formats.MODES[mode].channels * dtype.itemsize
    return StreamedFrame(png.RowStream(source, spans, row_bytes, height, feed), buffer, mode, pages)


def _streamed_picture(img: Image.Image, frame: StreamedFrame, auto_orient: bool) -> Picture:
    """The picture of a PNG whose rows stream (:func:`_png_stream`); an EXIF orientation, which
    needs every row to turn the image, is applied once they are all decoded."""
    orientation = _orientation(img) if auto_orient else None  # the tile is empty: nothing is decoded
    frames: list[Frame] = [frame]
    if orientation:
        frames = [ArrayFrame(np.ascontiguousarray(_ARRAY_TRANSPOSES[_TRANSPOSES[orientation]](frame.to_array())))]
        frame.close()
    return Picture(frames=frames, mode=frame.mode, source_mode=img.mode, format="PNG", orientation=orientation,
                   **_metadata(img, orientation))


def _wait_for_rows(stream: png.RowStream, rows: int) -> None:
    try:
        stream.wait(rows)
    except png.StreamError as error:
        raise _stream_error(error) from None


def _stream_error(error: png.StreamError) -> ImageError:
    """A PNG's image data that failed to read (the decoder's words) or is not what its header
    says (:class:`poolcli.inflate.Damaged`), as one reason."""
    if isinstance(error, inflate.Damaged):
        return ImageError(f"damaged PNG file ({error})")
    return ImageError(f"truncated or damaged PNG data ({error})")


def _decode_png16(img: Image.Image, source: bytes, mode: str, orientation: int | None) -> Picture:
    """16-bit colour PNG, which Pillow would read as 8-bit: pixels from imagecodecs, metadata
    from Pillow's reading of the chunks."""
    import imagecodecs

    try:
        array = imagecodecs.png_decode(source)
    except UnicodeDecodeError:  # libpng's complaint, in bytes imagecodecs could not read
        raise ImageError("damaged PNG file (libpng cannot read its chunks: one is repeated, out of place or "
                         "broken)") from None
    width, height = img.size
    channels = formats.MODES[mode].channels
    transparent = img.info.get("transparency") if mode == "RGB;16" else None
    if isinstance(transparent, tuple) and array.ndim == 3 and array.shape[2] == channels + 1:
        array = array[..., :channels]  # libpng's own alpha from the tRNS chunk: made again below
    if array.dtype != np.uint16 or array.shape != (height, width, channels):
        raise ImageError(f"damaged PNG file: the header says {width}x{height} 16-bit {mode[:-3]}, the data "
                         f"decodes as {array.shape} {array.dtype}")
    source_mode = mode
    if isinstance(transparent, tuple):  # tRNS: one colour is transparent
        array, mode = _with_keyed_alpha(array, transparent), "RGBA;16"
    if orientation:
        array = _ARRAY_TRANSPOSES[_TRANSPOSES[orientation]](array)
    return Picture(frames=[ArrayFrame(np.ascontiguousarray(array))], mode=mode, source_mode=source_mode, format="PNG",
                   orientation=orientation, **_metadata(img, orientation))


def _orientation(img: Image.Image) -> int | None:
    if img.format == "PNG" and "exif" not in img.info:
        # Pillow's getexif() loads a PNG whole to find an eXIf chunk after the image data; done
        # here, outside the guard below, a damaged image is an error instead of silent zeros.
        img.load()
    try:
        orientation = img.getexif().get(_ORIENTATION)
    except Exception:  # a broken EXIF block must not stop the pixels
        return None
    return orientation if orientation in _TRANSPOSES else None


_XMP_ORIENTATION = (rb'\s*tiff:Orientation="[0-9]"', rb"\s*<tiff:Orientation>[0-9]</tiff:Orientation>")


def _metadata(img: Image.Image, orientation: int | None) -> dict[str, Any]:
    """ICC profile, DPI, EXIF (without layout tags, and without the orientation once applied), XMP."""
    exif = None
    try:
        exif_data = img.getexif()
        stale = _LAYOUT_TAGS | ({int(_ORIENTATION)} if orientation is not None else set())
        for tag in stale & set(exif_data):
            del exif_data[tag]
        exif_data.pop(_XMP_TIFF_TAG, None)  # a TIFF's XMP tag: kept as XMP instead
        description = exif_data.get(int(_B.ImageDescription))
        if isinstance(description, str) and _LAYOUT_DESCRIPTION.match(description):
            del exif_data[int(_B.ImageDescription)]
        exif = exif_data.tobytes() if len(exif_data) else None
    except Exception:  # unreadable EXIF is dropped, not fatal
        exif = None
    xmp = img.info.get("xmp") or img.info.get("XML:com.adobe.xmp") or None
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    if xmp and orientation is not None:
        for pattern in _XMP_ORIENTATION:
            xmp = re.sub(pattern, b"", xmp)
    dpi = img.info.get("dpi")
    return {
        "icc_profile": img.info.get("icc_profile") or None,
        "dpi": (float(dpi[0]), float(dpi[1])) if dpi and len(dpi) == 2 and dpi[0] and dpi[1] else None,
        "exif": exif,
        "xmp": xmp if isinstance(xmp, bytes) else None,
    }


# Pillow's exceptions for damaged files, by type, as what is wrong with the file; the first
# matching row wins.  {fmt}: the file's format; {detail}: the library's own words.
_REASONS: list[tuple[tuple[type[BaseException], ...], str]] = [
    ((UnidentifiedImageError,), "not an image file Pillow can read"),
    ((FileNotFoundError,), "no such file"),
    ((IsADirectoryError,), "is a folder, not a file"),
    ((PermissionError,), "permission denied"),
    ((MemoryError,), "not enough memory to decode this image"),
    ((SyntaxError,), "damaged {fmt} header ({detail})"),
    ((struct.error, EOFError, IndexError), "damaged {fmt} file: data cut short or pointing outside the file "
                                           "({detail})"),
    ((OverflowError,), "damaged {fmt} header: a size or offset out of range ({detail})"),
    ((OSError,), "truncated or damaged {fmt} data ({detail})"),
]


# Signatures of the formats poolcli writes: a file that starts like one but that Pillow cannot
# open is a damaged file of that format, not "not an image".
_SIGNATURES = [(0, b"\x89PNG\r\n\x1a\n", "PNG"), (0, b"GIF87a", "GIF"), (0, b"GIF89a", "GIF"), (0, b"II*\x00", "TIFF"),
               (0, b"MM\x00*", "TIFF"), (0, b"\xff\xd8\xff", "JPEG"), (0, b"BM", "BMP"), (8, b"WEBP", "WEBP")]


def sniffed(source: str | bytes) -> str | None:
    """The format (PNG, GIF, TIFF, JPEG, BMP, WEBP) whose signature a file or its first bytes
    start with, or None."""
    try:
        if isinstance(source, str):
            with open(source, "rb") as handle:
                source = handle.read(16)
    except OSError:
        return None
    return next((fmt for at, magic, fmt in _SIGNATURES if source[at:at + len(magic)] == magic), None)


def _reason(error: Exception, decoding: _Decoding) -> str:
    """The one-line reason for a failed decode: what is wrong with the file, then the library's text."""
    if isinstance(error, UnidentifiedImageError) and decoding.format:
        error = SyntaxError("Pillow cannot read it")
    fmt = decoding.format or "image"
    text = str(error) or type(error).__name__
    detail = "; ".join([text, *(line for line in decoding.library if line not in text)])
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        # Pillow's guard fired first (while opening, or when a GIF frame grows the canvas)
        claimed = re.search(r"\((\d+) pixels\)", text)
        size = f" ({claimed.group(1)} pixels)" if claimed else ""
        plausible = decoding._plausible_bound(None)
        if decoding.max_pixels is None or (plausible is not None and plausible < decoding.max_pixels):
            count = f"{claimed.group(1)} pixels," if claimed else "more pixels"
            return f"damaged {fmt} file: {decoding.what()} claims {count} more than a file of " \
                   f"{decoding.file_size} bytes can hold"
        return (f"{decoding.what()} size{size} exceeds the limit of {decoding.max_pixels} pixels (decompression "
                "bomb protection); raise it with --max-pixels N (0 removes it) if you trust this file")
    if isinstance(error, OSError) and error.errno is not None and error.strerror:
        return error.strerror
    for types, template in _REASONS:
        if isinstance(error, types):
            reason = template.format(fmt=fmt, detail=detail)
            if types == (UnidentifiedImageError,) and decoding.library:
                reason += f" ({'; '.join(decoding.library)})"
            return reason
    return f"damaged {fmt} file ({type(error).__name__}: {detail})"


# --------------------------------------------------------------------------- encoding


def check_format(mode: str, file_format: str) -> None:
    """Raise ImageError unless ``file_format`` stores ``mode`` pixels faithfully.

    >>> check_format("F", "PNG")
    Traceback (most recent call last):
    ...
    poolcli.images.ImageError: cannot write 32-bit float (F) pixels as PNG; formats that can: TIFF, .npy
    """
    if not formats.FORMATS[file_format].holds(mode):
        can = ", ".join(formats_that_hold(mode) + [".npy"])
        reason = f"cannot write {describe_mode(mode)} pixels as {file_format}; formats that can: {can}"
        if formats.MODES[mode].alpha and formats.FORMATS[file_format].holds(formats.FLATTENED[mode]):
            reason += "; or flatten the alpha onto a colour with --background COLOR"
        raise ImageError(reason)


def storage_mode(mode: str, file_format: str, frames: list[Frame]) -> str:
    """The mode ``frames`` of ``mode`` are written in as ``file_format``: their own, or a
    narrower one every value fits in (32-bit integers as a 16-bit PNG; see
    :data:`poolcli.formats.NARROWED_MODES`).  A lazy frame asks its decoder, not a copy."""
    narrowed = formats.NARROWED_MODES.get((mode, file_format))
    if narrowed is None:
        return mode
    name, low, high = narrowed
    ranges = [frame.value_range() for frame in frames]
    return name if all(low <= lo and hi <= high for lo, hi in ranges) else mode


def profile_description(icc_profile: bytes) -> str:
    """The name an ICC profile gives itself (e.g. "sRGB IEC61966-2.1"), or "unreadable"."""
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        return ImageCms.getProfileDescription(profile).strip() or "unnamed"
    except Exception:  # a damaged profile is a reason to refuse, not to crash
        return "unreadable"


def _frame_image(array: np.ndarray, mode: str) -> Image.Image:
    """An (H, W, C) array as a Pillow image of ``mode``, read straight from the array's buffer."""
    height, width = array.shape[:2]
    data = np.ascontiguousarray(array, dtype=MODE_DTYPES[mode].newbyteorder("="))
    return Image.frombuffer(mode, (width, height), data, "raw", mode, 0, 1)


def _padded_image(frame: PaddedFrame) -> Image.Image:
    """An RGB Pillow image of padded pixels: Pillow unpacks its own layout (one C copy)."""
    height, width = frame.shape[:2]
    return Image.frombuffer("RGB", (width, height), frame.padded, "raw", "RGBX", 0, 1)


def _save_options(picture: Picture, file_format: str, quality: int | None, compression: int | None,
                  dpi_scale: tuple[float, float]) -> dict[str, Any]:
    """Pillow's save options for what ``file_format`` keeps of ``picture`` (formats.FORMATS)."""
    fmt = formats.FORMATS[file_format]
    options: dict[str, Any] = {}
    if file_format == "PNG":
        options["compress_level"] = DEFAULT_COMPRESSION if compression is None else compression
    elif file_format == "TIFF" and compression:
        options["compression"] = "tiff_adobe_deflate"  # at libtiff's level: Pillow passes none
    if picture.icc_profile and fmt.icc:
        options["icc_profile"] = picture.icc_profile
    if picture.exif and fmt.exif:
        options["exif"] = picture.exif
    if picture.dpi and fmt.dpi:
        dpi = (picture.dpi[0] / dpi_scale[0], picture.dpi[1] / dpi_scale[1])
        options["dpi"] = tuple(round(v) for v in dpi) if fmt.integer_dpi else dpi
    if fmt.quality is not None:
        options["quality"] = quality if quality is not None else fmt.quality
    if picture.xmp and fmt.xmp:
        if file_format == "PNG":
            from PIL.PngImagePlugin import PngInfo

            info = PngInfo()
            info.add_itxt("XML:com.adobe.xmp", picture.xmp)
            options["pnginfo"] = info
        elif file_format == "TIFF":  # Pillow writes TIFF tags from an Exif mapping
            tags = Image.Exif()
            if picture.exif:
                tags.load(picture.exif)
            tags[_XMP_TIFF_TAG] = picture.xmp
            options["exif"] = tags
        else:
            options["xmp"] = picture.xmp
    return options


def encode(picture: Picture, stream: BinaryIO, file_format: str, *, quality: int | None = None,
           compression: int | None = None, dpi_scale: tuple[float, float] = (1.0, 1.0)) -> None:
    """Write ``picture`` to ``stream`` as ``file_format``, keeping what the format holds of ICC
    profile, EXIF (without a stale orientation), XMP, DPI scaled by ``dpi_scale`` (x, y), frame
    durations and loop count (see :data:`poolcli.formats.FORMATS`).

    ``compression`` (0-9) is PNG's deflate level (default :data:`DEFAULT_COMPRESSION`); for TIFF,
    1-9 writes Adobe Deflate (libtiff's own level: Pillow passes none), 0 or None nothing."""
    mode = storage_mode(picture.mode, file_format, picture.frames)
    check_format(mode, file_format)
    frames = picture.frames
    if len(frames) > 1 and not formats.FORMATS[file_format].frames:
        can = ", ".join(name for name, fmt in formats.FORMATS.items() if fmt.frames)
        raise ImageError(f"{file_format} cannot hold {len(frames)} frames; use {can}")
    options = _save_options(picture, file_format, quality, compression, dpi_scale)
    if file_format == "PNG" and len(frames) == 1:  # poolcli's own writer: several times faster than Pillow's
        frame = frames[0]  # read a band of rows at a time: a lazily pooled frame is pooled as it is written
        pixels = frame if frame.dtype == MODE_DTYPES[mode] else frame.to_array().astype(MODE_DTYPES[mode])
        png.write(stream, pixels, options["compress_level"], _png_chunks(options))
        return
    images = [_padded_image(frame) if isinstance(frame, PaddedFrame) and mode == "RGB"
              else _frame_image(frame.to_array(), mode) for frame in frames]
    if len(images) > 1:
        options["save_all"] = True
        options["append_images"] = images[1:]
        if picture.durations and file_format != "TIFF":
            options["duration"] = picture.durations
        if picture.loop is not None and file_format != "TIFF":
            options["loop"] = picture.loop
    library: list[str] = []  # what libtiff prints while encoding (no other encoder prints)
    try:
        with _captured_stderr(library) if file_format == "TIFF" else contextlib.nullcontext():
            images[0].save(stream, format=file_format, **options)
    except (OSError, ValueError, OverflowError, struct.error) as error:
        said = "".join(f"; {line}" for line in library if line not in str(error))
        raise ImageError(f"cannot write {file_format}: {error}{said}") from None
    finally:
        for image in images:
            image.close()


def _png_chunks(options: dict[str, Any]) -> list[bytes]:
    """The metadata chunks Pillow would write for the same save ``options``, for :mod:`poolcli.png`."""
    chunks = []
    if icc := options.get("icc_profile"):
        chunks.append(png.chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc)))
    if dpi := options.get("dpi"):
        chunks.append(png.chunk(b"pHYs", struct.pack(">IIB", int(dpi[0] / 0.0254 + 0.5), int(dpi[1] / 0.0254 + 0.5),
                                                     1)))
    if exif := options.get("exif"):
        chunks.append(png.chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif))
    if info := options.get("pnginfo"):
        chunks.extend(png.chunk(kind, value) for kind, value, *_ in info.chunks)
    return chunks
