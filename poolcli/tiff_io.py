"""TIFF in and out, tile by tile, with tifffile (imported lazily): the streamed TIFF reader
(:class:`TiffInput`, :class:`TiffPageReader`: a local path, or a URL read by byte ranges) and the
tiled BigTIFF writer (:func:`write_tiff`), which takes strips in order.

What the pixels mean travels with them: an OME-TIFF's OME-XML (:mod:`poolcli.ome`) and a
GeoTIFF's georeferencing (:mod:`poolcli.geo`) are read here as plain values and written back by
the caller's choice.  Several channels that are not RGB(A) are written one page per channel
(SamplesPerPixel 1): libvips cannot read tiled planar-separate pages, and OME lays planes out so.

May import: NumPy, ``chunked``, ``storage``, ``geo`` and ``zarr_io`` (for ``aszarr``) at import
time; tifffile (this module and ``zarr_io`` alone) inside the functions that read or write;
``engine`` for its threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from poolcli import storage
from poolcli.chunked import Band, ChannelPick, ChunkedReader, Strips, ahead
from poolcli.errors import GiantImageError
from poolcli.geo import GeoReference
from poolcli.zarr_io import load_zarr, zarr_major

TILE = 256  # output TIFF tiles (a multiple of 16, as TIFF requires)

# TIFF compressions written back as they came in; anything else (JPEG: lossy) is written as Deflate.
_KEEP_COMPRESSION = {1: None, 5: "lzw", 8: "zlib", 32946: "zlib", 50000: "zstd", 32773: "packbits", 34925: "lzma"}

_COMPRESSION_NAMES = {1: "uncompressed", 5: "LZW", 7: "JPEG", 8: "Deflate", 32946: "Deflate", 50000: "Zstd",
                      32773: "PackBits", 34925: "LZMA", 34887: "LERC", 50001: "WebP", 33003: "JPEG 2000"}


class DamagedTiff(GiantImageError):
    """A TIFF whose header contradicts itself or the file size: refused, not handed on to Pillow
    (whose decoder would trust the same header and allocate or loop for as long as it claims)."""


def check_segments(page: Any, file_size: int) -> None:
    """Refuse a page whose strips/tiles do not fit its header or the file, before any decoding.

    Bounded work (one pass over the listed segments): a header mutated to claim billions of rows
    otherwise sends every later step (the output size, the decoder) after those rows.

    Examples
    --------
    >>> from types import SimpleNamespace as Page
    >>> check_segments(Page(chunked=(2, 1, 1), dataoffsets=(8, 68), databytecounts=(60, 60), is_tiled=False), 128)
    >>> check_segments(Page(chunked=(9, 1, 1), dataoffsets=(8,), databytecounts=(60,), is_tiled=False), 128)
    Traceback (most recent call last):
    ...
    poolcli.tiff_io.DamagedTiff: damaged TIFF: its header asks for 9 strips but the file lists 1
    """
    kind = "tiles" if page.is_tiled else "strips"
    expected = int(np.prod(page.chunked, dtype=np.int64))
    listed = len(page.dataoffsets)
    if listed != expected or len(page.databytecounts) != expected:
        raise DamagedTiff(f"damaged TIFF: its header asks for {expected} {kind} but the file lists {listed}")
    ends = np.asarray(page.dataoffsets, dtype=np.uint64) + np.asarray(page.databytecounts, dtype=np.uint64)
    past = np.flatnonzero((ends > file_size) & (np.asarray(page.databytecounts) > 0))
    if past.size:
        raise DamagedTiff(f"damaged TIFF: {kind[:-1]} {int(past[0])} ends at byte {int(ends[past[0]])}, "
                          f"past the end of the {file_size}-byte file (truncated?)")


def load_tifffile() -> Any:
    """tifffile, with its log quiet: a damaged file is reported once, as poolcli's one line."""
    import logging

    import tifffile

    logging.getLogger("tifffile").setLevel(logging.CRITICAL + 1)
    return tifffile


# TiffPageReader decodes segments with tifffile's per-segment decoder and its private keyword
# ``_fullsize`` (edge tiles padded to the whole tile).  This is the one place that relies on it: a
# tifffile without it, or USE_SEGMENT_DECODER = False (the tests force the fallback), reads through
# the public ``aszarr`` store instead (the same pixels, slower for thousands of small tiles).
USE_SEGMENT_DECODER = True


def segment_decoding(page: Any) -> bool:
    """Can :class:`TiffPageReader` decode this page's segments (tifffile's decoder takes
    ``_fullsize``)?"""
    if not USE_SEGMENT_DECODER:
        return False
    import inspect

    try:
        return "_fullsize" in inspect.signature(page.decode).parameters
    except (TypeError, ValueError, AttributeError):
        return False


# Bytes of TIFF segments read (and then decoded) at once, at most; neighbours closer than _GAP
# bytes share a read.  Each read is one buffer that the segments are views of: tifffile's own
# reads (256 MiB at once, every tile of a strip) held the bytes several times over (each segment
# copied out, and for a URL fsspec's read-ahead block and its copy beside the HTTP body), so the
# buffers grew with the image's width: a Dask worker pooling a 20000 px wide RGB TIFF on S3
# peaked at 675 MiB.  Few reads matter for object storage, where each is a request: 64 MiB holds
# a strip's tiles at the default --memory-limit (a 20000² RGB TIFF on a moto S3 endpoint: 26.5 s;
# 32 MiB reads, twice as many requests: 44 s; tifffile's reads: 29.5 s).
READ_BYTES = 64 << 20
_GAP = 1 << 16

# Reads bytes ``[start, stop)`` of a TIFF: a local file through tifffile's handle, a URL by one
# ranged request.
ReadSpan = Callable[[int, int], Any]


def spans(segments: Sequence[tuple[int, int, int]], limit: int | None = None,
          gap: int = _GAP) -> list[list[tuple[int, int, int]]]:
    """Segments ``(index, offset, count)`` in file order, grouped into the spans read at once:
    neighbours at most ``gap`` bytes apart, a span at most ``limit`` (READ_BYTES) bytes long, or
    one segment.

    Examples
    --------
    >>> [[i for i, _, _ in span] for span in spans([(0, 100, 10), (1, 110, 10), (2, 900, 10), (3, 120, 10)],
    ...                                             limit=25, gap=0)]
    [[0, 1], [3], [2]]
    """
    limit = READ_BYTES if limit is None else limit
    found: list[list[tuple[int, int, int]]] = []
    for segment in sorted(segments, key=lambda s: s[1]):
        if found:
            first, last = found[-1][0], found[-1][-1]
            if segment[1] - (last[1] + last[2]) <= gap and segment[1] + segment[2] - first[1] <= limit:
                found[-1].append(segment)
                continue
        found.append([segment])
    return found


def local_span(handle: Any) -> ReadSpan:
    """:data:`ReadSpan` of a file opened by tifffile (a short read gives fewer bytes: the
    segments past them then fail to decode as damaged)."""

    def read(start: int, stop: int) -> memoryview:
        buffer = bytearray(stop - start)
        with handle.lock:
            handle.seek(start)
            got = handle.readinto(buffer)
        return memoryview(buffer)[:got]

    return read


# Read uncompressed segments straight into place (:func:`raw_segments`); the tests turn it off to
# compare with tifffile's decoder.
USE_RAW_READS = True


def raw_segments(page: Any) -> int | None:
    """The file descriptor to read ``page``'s segments from when they hold its pixels as they are
    in memory (uncompressed, whole bytes, this machine's byte order, a local file that is the
    TIFF): :class:`TiffPageReader` then reads them with one ``preadv`` per run of adjacent
    segments, with no decoder, instead of tifffile's read, split and copy of each (most of
    a pyramid's time for an uncompressed input).  ``None`` otherwise."""
    import os
    import sys

    dtype = np.dtype(page.dtype)
    if (not USE_RAW_READS or not hasattr(os, "preadv") or int(page.compression) != 1 or int(page.predictor) != 1
            or int(page.fillorder) != 1 or page.is_subsampled or getattr(page, "imagedepth", 1) != 1
            or getattr(page, "tiledepth", 1) != 1 or dtype.kind not in "uif"
            or any(int(bits) != 8 * dtype.itemsize for bits in np.atleast_1d(page.bitspersample))
            or (dtype.itemsize > 1 and page.parent.byteorder != ("<" if sys.byteorder == "little" else ">"))):
        return None
    handle = page.parent.filehandle
    if not handle.is_file:
        return None
    descriptor = handle.fileno()
    # a TIFF inside a larger file (its offsets count from its own start) is left to tifffile
    return descriptor if handle.size == os.fstat(descriptor).st_size else None


class TiffPageReader:
    """Rows of one TIFF page, decoded segment by segment with tifffile's own decoder, or read
    straight into place when they are plain pixels (:func:`raw_segments`).

    Only the tiles or strips covering the rows asked for are read (in file order) and decoded,
    on the engine's threads: tifffile's codecs release the GIL.  (Reading through ``aszarr()``
    and zarr gives the same pixels at a fraction of the speed for thousands of small tiles.)
    """

    def __init__(self, page: Any, shape: tuple[int, int, int], planar: bool, read_span: ReadSpan | None = None):
        self.page = page
        self.read_span = read_span or local_span(page.parent.filehandle)
        self.shape = shape
        self.dtype = np.dtype(page.dtype)
        self.planar = planar
        self.channels_last = not planar
        self.segment_rows = page.tilelength if page.is_tiled else min(page.rowsperstrip or page.imagelength,
                                                                       page.imagelength)
        self.segment_cols = page.tilewidth if page.is_tiled else page.imagewidth
        self.across = -(-shape[2] // self.segment_cols)
        self.down = -(-shape[1] // self.segment_rows)
        expected = (shape[0] if planar else 1) * self.across * self.down
        if min(len(page.dataoffsets), len(page.databytecounts)) < expected:
            raise GiantImageError(f"damaged TIFF: {len(page.dataoffsets)} of {expected} "
                             f"{'tile' if page.is_tiled else 'strip'} offsets")
        self._bands: dict[tuple[int, ...] | None, Band] = {}
        self.decode = page.decode
        self.decode_args: dict[str, Any] = {"_fullsize": bool(page.is_tiled)}
        if page.compression in (6, 7, 34892, 33007):  # JPEG: tables live in the page
            self.decode_args.update(jpegtables=page.jpegtables, jpegheader=page.jpegheader)
        self.raw = raw_segments(page)

    def read(self, top: int, bottom: int, channels: list[int] | None = None) -> np.ndarray:
        """Rows ``top:bottom`` as (C, rows, W); each tile or strip row is decoded once while the
        reads move down the image (:class:`Band`), however thin they are."""
        key = tuple(channels) if channels is not None and self.planar else None
        band = self._bands.get(key)
        if band is None:
            self._bands = {key: Band(self.segment_rows, self.shape[1])}
            band = self._bands[key]
        return band.read(top, bottom, lambda t, b: self._decode(t, b, channels))

    def _decode(self, top: int, bottom: int, channels: list[int] | None = None) -> np.ndarray:
        from poolcli import engine

        planes = (channels if channels is not None else list(range(self.shape[0]))) if self.planar else [0]
        width, rows = self.shape[2], bottom - top
        if self.planar:
            out = np.empty((len(planes), rows, width), dtype=self.dtype)
        else:
            out = np.empty((rows, width, self.shape[0]), dtype=self.dtype)
        if rows <= 0:
            return out if self.planar else out.transpose(2, 0, 1)
        r0, r1 = top // self.segment_rows, -(-bottom // self.segment_rows)
        indices = [p * self.across * self.down + r * self.across + c
                   for p in planes for r in range(r0, r1) for c in range(self.across)]
        if self.raw is not None:
            raw = self._read_raw(self.raw, indices, len(planes), top, bottom)
            if raw is not None:
                return raw
        offsets = [self.page.dataoffsets[i] for i in indices]
        counts = [self.page.databytecounts[i] for i in indices]
        where = {index: k for k, index in enumerate(indices)}

        def place(item: tuple[memoryview | None, int]) -> None:
            data, index = item
            try:
                segment, (_, _, y, x, _), _ = self.decode(data, index, **self.decode_args)
            except Exception as error:  # codecs raise their own types for damaged data
                raise GiantImageError(f"damaged TIFF data in segment {index} ({type(error).__name__}: {error})"
                                      ) from None
            plane = where[index] // ((r1 - r0) * self.across)
            y_lo, y_hi = max(y, top), min(y + self.segment_rows, bottom)
            x_hi = min(x + self.segment_cols, width)
            if y_hi <= y_lo:
                return
            if segment is None:  # an empty segment: zeros, as tifffile does
                values: Any = 0
            else:
                values = segment.reshape(segment.shape[-3:])[y_lo - y: y_hi - y, : x_hi - x]
            if self.planar:
                out[plane, y_lo - top: y_hi - top, x:x_hi] = values if np.isscalar(values) else values[..., 0]
            else:
                out[y_lo - top: y_hi - top, x:x_hi] = values

        for batch in self._segments(indices, offsets, counts):
            threads = min(engine.get_num_threads(), len(batch))
            if threads > 1:
                list(engine._executor(threads).map(place, batch))
            else:
                for item in batch:
                    place(item)
        return out if self.planar else out.transpose(2, 0, 1)

    def _segments(self, indices: list[int], offsets: list[int], counts: list[int],
                  ) -> Iterator[list[tuple[memoryview | None, int]]]:
        """``(data, index)`` of the segments, a span (:func:`spans`) at a time; an empty segment's
        data is None (zeros, as tifffile reads it)."""
        present = [(i, o, n) for i, o, n in zip(indices, offsets, counts, strict=True) if o > 0 and n > 0]
        if len(present) < len(indices):
            yield [(None, i) for i, o, n in zip(indices, offsets, counts, strict=True) if not (o > 0 and n > 0)]
        for span in spans(present):
            start = span[0][1]
            data = memoryview(self.read_span(start, span[-1][1] + span[-1][2]))
            yield [(data[o - start: o - start + n], i) for i, o, n in span]

    def _read_raw(self, descriptor: int, indices: list[int], planes: int, top: int, bottom: int) -> np.ndarray | None:
        """Rows ``top:bottom`` of ``planes`` planes, from the segments ``indices`` (whole rows of
        segments, plane after plane), a row of segments at a time: read into one buffer in file
        order, then copied into place with one NumPy assignment; ``None`` when a segment is not
        whole (a short last strip, a damaged count), has no offset (an empty segment: zeros, as
        tifffile reads it) or cannot be read: the decoder then does."""
        import os

        seg_rows, seg_cols, across = self.segment_rows, self.segment_cols, self.across
        samples = 1 if self.planar else self.shape[0]
        size = seg_rows * seg_cols * samples * self.dtype.itemsize
        if any(self.page.databytecounts[i] != size or self.page.dataoffsets[i] <= 0 for i in indices):
            return None
        down = len(indices) // (planes * across)
        segments = np.empty((planes, across, seg_rows, seg_cols, samples), dtype=self.dtype)
        flat = segments.reshape(-1).view(np.uint8).data
        # (planes, rows, segments across x their columns, samples): the last segment's padding
        # columns are read along and left out of the view returned
        out = np.empty((planes, bottom - top, across * seg_cols, samples), dtype=self.dtype)
        placed = out.reshape(planes, bottom - top, across, seg_cols, samples)
        r0 = top // seg_rows
        for r in range(down):
            offsets = [self.page.dataoffsets[indices[(p * down + r) * across + c]]
                       for p in range(planes) for c in range(across)]
            k = 0
            while k < len(offsets):  # one read per run of segments that follow each other in the file
                end = k + 1
                while end < len(offsets) and offsets[end] == offsets[end - 1] + size:
                    end += 1
                if os.preadv(descriptor, [flat[k * size: end * size]], offsets[k]) != (end - k) * size:
                    return None  # a short read: the decoder words what is wrong
                k = end
            y = (r0 + r) * seg_rows
            y_lo, y_hi = max(y, top), min(y + seg_rows, bottom)
            placed[:, y_lo - top: y_hi - top] = segments[:, :, y_lo - y: y_hi - y].transpose(0, 2, 1, 3, 4)
        out = out[:, :, : self.shape[2]]
        return out[..., 0] if self.planar else out[0].transpose(2, 0, 1)

    def channels(self, picks: list[int]) -> Any:
        if not self.planar:
            return ChannelPick(self, picks)  # type: ignore[arg-type]
        reader = self

        class Picked:
            shape = (len(picks), *reader.shape[1:])
            dtype = reader.dtype

            def read(self, top: int, bottom: int) -> np.ndarray:
                return reader.read(top, bottom, picks)

        return Picked()


class PlanesReader:
    """Planes that are pages of their own (an OME-TIFF's C, Z and T planes), read as the
    channels of one (C, H, W) image, each page through its own :class:`TiffPageReader` (so each
    keeps its current band of tiles decoded)."""

    def __init__(self, readers: list[TiffPageReader]):
        self.readers = readers
        self.shape: tuple[int, int, int] = (len(readers), *readers[0].shape[1:])
        self.dtype = readers[0].dtype

    def read(self, top: int, bottom: int) -> np.ndarray:
        return np.concatenate([reader.read(top, bottom) for reader in self.readers])

    def channels(self, picks: list[int]) -> PlanesReader:
        return PlanesReader([self.readers[c] for c in picks])


@dataclass


class TiffInput:
    """A TIFF's first image series, read chunk by chunk through ``aszarr()``."""

    path: str
    shape: tuple[int, int, int]  # (C, H, W)
    dtype: np.dtype
    planar: bool
    photometric: int
    extrasamples: tuple[int, ...]
    compression: int
    tiled: bool
    bigtiff: bool
    ome: bool
    chunk_rows: int  # rows of one tile or strip: the least that can be decoded
    pages: int
    handle: Any = field(default=None, repr=False)
    ome_xml: str | None = field(default=None, repr=False)  # the OME-XML of an OME-TIFF
    geo: GeoReference | None = None  # a GeoTIFF's georeferencing
    reader: ChunkedReader | TiffPageReader | PlanesReader | None = field(default=None, repr=False)
    read_span: ReadSpan | None = field(default=None, repr=False)  # a URL's ranged reads (None: the local file)

    @property
    def has_alpha(self) -> bool:
        return bool(self.extrasamples) and self.extrasamples[-1] in (1, 2)

    @property
    def associated_alpha(self) -> bool:
        return bool(self.extrasamples) and self.extrasamples[-1] == 1

    def describe(self) -> str:
        """E.g. "uint16, 3 channels, tiled BigTIFF (Deflate)"."""
        channels = self.shape[0]
        kind = ("tiled " if self.tiled else "striped ") + ("OME-" if self.ome else "") + \
            ("BigTIFF" if self.bigtiff else "TIFF")
        extras = [_COMPRESSION_NAMES.get(self.compression, f"compression {self.compression}")]
        if channels > 1:
            extras.append("planar" if self.planar else "interleaved")
        if self.has_alpha:
            extras.append("associated alpha" if self.associated_alpha else "alpha")
        plural = "s" if channels != 1 else ""
        return f"{self.dtype}, {channels} channel{plural}, {kind} ({', '.join(extras)})"

    def open(self) -> ChunkedReader | TiffPageReader | PlanesReader:
        series = self.handle.series[0]
        page = series.levels[0].keyframe
        pages = series.levels[0].pages
        if not segment_decoding(page):
            pass  # this tifffile's page decoder lacks what TiffPageReader needs: the public aszarr path
        elif len(pages) > 1 and len(pages) == self.shape[0] and page.samplesperpixel == 1 and not page.is_subsampled:
            # one page per plane (OME's C, Z, T): each read by its own page reader
            readers = [TiffPageReader(p.aspage() if hasattr(p, "aspage") else p, (1, *self.shape[1:]), False,
                                      self.read_span)
                       for p in pages]
            self.reader = PlanesReader(readers)
            return self.reader
        elif len(series.levels[0].pages) == 1 and page.dataoffsets and not page.is_subsampled:
            self.reader = TiffPageReader(page, self.shape, self.planar, self.read_span)
            return self.reader
        zarr = load_zarr()
        store = self.handle.series[0].aszarr(level=0)
        array = zarr.open_array(store=store, mode="r") if zarr_major() >= 3 else zarr.open(store, mode="r")
        axes = self.handle.series[0].levels[0].axes
        y, x = axes.index("Y"), axes.index("X")
        channel_axis = next((i for i, a in enumerate(axes) if a not in "YX" and array.shape[i] > 1), None)
        channels_last = channel_axis is not None and channel_axis > x

        def index(channels: slice | list[int], rows: slice) -> tuple:
            selection: list[Any] = [0] * len(axes)
            selection[y], selection[x] = rows, slice(None)
            if channel_axis is not None:
                selection[channel_axis] = channels
            return tuple(selection)

        self.reader = ChunkedReader(array, index, self.shape, channels_last, kind="TIFF",
                                    band_rows=int(array.chunks[y]))
        return self.reader

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

# A remote TIFF is read through fsspec in blocks of this size (a tile row's segments, usually).
_REMOTE_BLOCK = 4 << 20


def remote_span(remote: Any, url: str) -> ReadSpan:
    """:data:`ReadSpan` of an fsspec file: one ranged request a span, past its read-ahead block
    (the header's many small reads go through that block).  (A file object without ``fs`` and
    ``path`` is read through tifffile's handle, as a local file is.)"""

    def read(start: int, stop: int) -> bytes:
        with storage.translated(url):
            return remote.fs.cat_file(remote.path, start=start, end=stop)

    return read


def open_tiff(path: str, storage_options: str | None = None) -> TiffInput | None:
    """Open a TIFF (a path, or a URL read by byte ranges) for streaming; ``None`` when it is not
    one image of (C, H, W) pixels (several frames, or a layout only Pillow's path reads)."""
    tifffile = load_tifffile()
    remote = None
    if storage.is_url(path) and not storage.is_local_url(path):
        fs, inner = storage.filesystem(path, storage_options)
        with storage.translated(path):
            remote = fs.open(inner, "rb", block_size=_REMOTE_BLOCK, cache_type="readahead")
    elif storage.is_url(path):
        path = storage.local_path(path)
    try:
        handle = tifffile.TiffFile(remote if remote is not None else path, name=Path(path).name)
    except Exception as error:  # damaged headers raise many types inside tifffile
        if remote is not None:
            remote.close()
            storage.raise_for(error, path)
        raise GiantImageError(f"not a readable TIFF ({type(error).__name__}: {error})") from None
    try:
        # Index every page first: tifffile then stops at a circular IFD chain once, where walking
        # ``series`` page by page re-parses the loop (a mutated next-IFD offset took 10 s).
        len(handle.pages)
        series = handle.series[0]
        level = series.levels[0]
        page = series.keyframe
        axes, shape = level.axes, level.shape
        others = [(a, n) for a, n in zip(axes, shape, strict=True) if a not in "YX"]
        big = [n for a, n in others if n > 1]
        # An OME-TIFF's planes (C, Z, T: one page of one sample each) are pooled as channels, in
        # page order; elsewhere samples or channels only: pages, Z, T, ... stay frames (Pillow's path).
        planes = (handle.is_ome and "S" not in axes and len(level.pages) == int(np.prod(big, dtype=np.int64)) > 1
                  and (len(big) > 1 or any(n > 1 and a not in "SC" for a, n in others)))
        if ("Y" not in axes or "X" not in axes or (not planes and len(big) > 1)
                or (not planes and any(n > 1 and a not in "SC" for a, n in others))
                or (len(handle.series) > 1 and not series.is_pyramidal)):
            handle.close()
            return None
        channels = int(np.prod(big, dtype=np.int64)) if big else 1
        check_segments(page, handle.filehandle.size)
        if page.dtype is None or np.dtype(page.dtype).kind not in "uif":
            handle.close()
            return None
        chunk_rows = page.tilelength if page.is_tiled else min(page.rowsperstrip or page.imagelength, page.imagelength)
        extrasamples = tuple(int(v) for v in page.extrasamples) if page.extrasamples else ()
        return TiffInput(
            path=path, shape=(channels, shape[axes.index("Y")], shape[axes.index("X")]), dtype=np.dtype(page.dtype),
            # planes in separate pages (OME's CYX) are planar too
            planar=channels > 1 and (page.planarconfig == 2 or axes.index(next(a for a, n in others if n > 1))
                                     < axes.index("Y")),
            photometric=int(page.photometric),
            extrasamples=extrasamples, compression=int(page.compression), tiled=page.is_tiled,
            bigtiff=handle.is_bigtiff, ome=handle.is_ome, chunk_rows=int(chunk_rows), pages=len(handle.pages),
            handle=handle, ome_xml=handle.ome_metadata if handle.is_ome else None,
            geo=GeoReference.from_tags({tag.code: tag.value for tag in page.tags}),
            read_span=remote_span(remote, path) if hasattr(remote, "fs") and hasattr(remote, "path") else None)
    except DamagedTiff:
        handle.close()
        raise
    except Exception as error:  # a header tifffile opened but cannot make sense of
        handle.close()
        raise GiantImageError(f"not a readable TIFF ({type(error).__name__}: {error})") from None
    except BaseException:
        handle.close()
        raise


def _tile_rows(strips: Strips, shape: tuple[int, int, int], contig: bool,
               tile: int = TILE) -> Iterator[list[np.ndarray]]:
    """Rows of tiles in TIFF order, each tile (tile, tile, S), from strips of any height: rows
    wait in a buffer until a whole row of tiles (or the image's last rows) is there."""
    channels, height, width = shape
    depth = channels if contig else 1
    pending: list[np.ndarray] = []
    buffered = 0
    done = 0
    for _, _, rows in strips:
        pending.append(rows)
        buffered += rows.shape[1]
        while buffered >= tile or (buffered and done + buffered >= height):
            band = pending[0] if len(pending) == 1 else np.concatenate(pending, axis=1)
            take = min(tile, band.shape[1])
            row = []
            for c in range(0, width, tile):
                block = band[:, :take, c: c + tile]
                whole = block.shape[1] == tile and block.shape[2] == tile
                out = (np.empty if whole else np.zeros)((tile, tile, depth), dtype=band.dtype)
                out[: block.shape[1], : block.shape[2]] = block.transpose(1, 2, 0)
                row.append(out)
            yield row
            rest = band[:, take:]
            pending = [rest] if rest.shape[1] else []
            buffered -= take
            done += take


@dataclass


class TiffLayout:
    """How a TIFF output stores its pixels (copied from the input where it can be).

    ``planar``: one page per channel, each of one sample (written channel after channel, as
    OME-TIFF does); else one page of interleaved samples."""

    planar: bool = False
    photometric: str | int = "minisblack"
    extrasamples: tuple[int, ...] = ()
    compression: str | None = "zlib"
    level: int | None = None  # the codec's level (--compression); None: its default

    @classmethod
    def like(cls, source: TiffInput) -> TiffLayout:
        """The input's layout, except: RGB(A) stays (or becomes) interleaved, other planar
        channels become one page each, and a GeoTIFF stays one page (GDAL reads the samples
        of one page as its bands, and further pages as other images)."""
        photometric: str | int = source.photometric
        if source.photometric in (6, 7):  # YCbCr/JPEG: pixels come out as RGB
            photometric = "rgb"
        if source.photometric == 3:  # palette: indices pooled as numbers, written as gray
            photometric = "minisblack"
        colours = source.shape[0] - len(source.extrasamples)
        rgb = photometric in (2, "rgb") and colours == 3
        compression = _KEEP_COMPRESSION.get(source.compression, "zlib")
        planar = source.planar and not rgb and source.geo is None
        return cls(planar, photometric, source.extrasamples, compression)

    def compressed(self, level: int | None) -> TiffLayout:
        """This layout with ``--compression`` applied: ``None`` keeps it, 0 stores the tiles,
        1-9 deflates them at that level.

        Examples
        --------
        >>> layout = TiffLayout(compression="lzw")
        >>> layout.compressed(None).compression, layout.compressed(0).compression, layout.compressed(6).level
        ('lzw', None, 6)
        """
        if level is None:
            return self
        return replace(self, compression="zlib" if level else None, level=level or None)

    def write_args(self, shape: tuple[int, int, int], dtype: np.dtype) -> dict[str, Any]:
        channels, height, width = shape
        args: dict[str, Any] = dict(dtype=dtype, tile=(TILE, TILE), compression=self.compression)
        if self.compression and self.level is not None:
            args["compressionargs"] = {"level": self.level}
        if self.planar and channels > 1:  # one page of one sample per channel
            return dict(args, shape=shape, photometric="minisblack")
        args.update(shape=(height, width, channels) if channels > 1 else (height, width),
                    photometric=self.photometric)
        if channels > 1:
            args["planarconfig"] = "contig"
        if self.extrasamples:
            args["extrasamples"] = self.extrasamples
        return args


def channel_passes(layout: TiffLayout, channels: int) -> list[list[int] | None]:
    """Planar TIFFs store plane after plane: one pass per channel; interleaved: one pass."""
    return [[c] for c in range(channels)] if layout.planar and channels > 1 else [None]


def write_tiff(path: str | Path, shape: tuple[int, int, int], dtype: np.dtype, layout: TiffLayout,
               passes: Iterable[Strips], *, levels: Iterable[tuple[tuple[int, int, int], Iterable[Strips]]] = (),
               subifds: int = 0, ome: bool = False, description: str | None = None,
               geo: Sequence[GeoReference | None] = ()) -> None:
    """Write a tiled BigTIFF from strips (one strip sequence per channel pass), then optionally
    pyramid levels: into SubIFDs with ``subifds``, else as reduced-resolution pages (GDAL's
    overviews).  ``path`` is written directly: callers use a temporary name.

    ``description`` is the first page's ImageDescription (an OME-XML document: tifffile writes
    none of its own); else ``ome`` has tifffile describe the channels in OME-XML, which keeps
    pages of one channel each one image for every reader.  ``geo`` holds the georeferencing of
    the image and of each level, in order."""
    tifffile = load_tifffile()

    def all_tiles(strip_passes: Iterable[Strips], level_shape: tuple[int, int, int]) -> Iterator[np.ndarray]:
        # tiles cut from the strips on a thread of their own, while this one writes the row before
        for strips in strip_passes:
            for row in ahead(_tile_rows(strips, level_shape, contig=not layout.planar)):
                yield from row

    if isinstance(layout.photometric, int) and layout.photometric not in set(tifffile.PHOTOMETRIC):
        raise GiantImageError(f"unsupported TIFF photometric {layout.photometric}: a TIFF output cannot say what its "
                         "pixels are; write .npy or .zarr")
    references = [*geo]

    def tags(level: int) -> dict[str, Any]:
        reference = references[level] if level < len(references) else None
        return {"extratags": reference.tags()} if reference is not None else {}

    ome = ome and description is None
    with tifffile.TiffWriter(path, bigtiff=True, ome=ome) as tif:
        args = layout.write_args(shape, dtype)
        extra: dict[str, Any] = {"subifds": subifds} if subifds else {}
        if ome:
            axes = ("CYX" if layout.planar else "YXS") if shape[0] > 1 else "YX"
            extra["metadata"] = {"axes": axes}
        else:
            extra["metadata"] = None
        if description is not None:
            extra["description"] = description
        tif.write(all_tiles(passes, shape), **args, **extra, **tags(0))
        for n, (level_shape, level_passes) in enumerate(levels, start=1):
            tif.write(all_tiles(level_passes, level_shape), **layout.write_args(level_shape, dtype), subfiletype=1,
                      metadata=None, **tags(n))
