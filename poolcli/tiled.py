"""Giant TIFF and Zarr images in and out, chunk by chunk, with tifffile and zarr (imported lazily).

Readers (:class:`TiffInput`, :class:`ZarrInput`) give :mod:`poolcli.strips` readers whose
``read(top, bottom)`` decodes only the tiles/strips/chunks covering those rows.  Writers take
strips in order and write them as they come: a tiled BigTIFF (tifffile writes an iterator of
tiles), a Zarr array (v2 or v3, whole chunk rows per strip), or a ``.npy`` (memory-mapped).
Stores are local folders or fsspec URLs (:func:`open_store`); every local output is committed by
:func:`poolcli.paths.staged`, and a Zarr written to object storage holds back its metadata until
its chunks are all there (:class:`HeldMetadata`), so no reader ever opens a half-written array.

zarr 2 (Python 3.10) and zarr 3 are both supported: the few calls that differ go through
:func:`_zarr_format_args`.

May import: NumPy, ``errors``, ``storage`` and ``strips`` at import time; tifffile and zarr (the only module
that does) inside the functions that read or write; fsspec through ``storage``; ``engine`` for its
threads.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poolcli import storage
from poolcli.errors import PoolcliError
from poolcli.formats import is_zarr_path

TILE = 256  # output TIFF tiles (a multiple of 16, as TIFF requires)
ZARR_CHUNK = 256  # output Zarr chunks along y and x (strips are cut at multiples of it)
# TIFF compressions written back as they came in; anything else (JPEG: lossy) is written as Deflate.
_KEEP_COMPRESSION = {1: None, 5: "lzw", 8: "zlib", 32946: "zlib", 50000: "zstd", 32773: "packbits", 34925: "lzma"}
_COMPRESSION_NAMES = {1: "uncompressed", 5: "LZW", 7: "JPEG", 8: "Deflate", 32946: "Deflate", 50000: "Zstd",
                      32773: "PackBits", 34925: "LZMA", 34887: "LERC", 50001: "WebP", 33003: "JPEG 2000"}


class TiledError(PoolcliError):
    """A giant-image input or output that cannot be handled, with a one-line reason."""


class DamagedTiff(TiledError):
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
    poolcli.tiled.DamagedTiff: damaged TIFF: its header asks for 9 strips but the file lists 1
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


# --------------------------------------------------------------------------------------------
# zarr 2 and 3
# --------------------------------------------------------------------------------------------


def _zarr() -> Any:
    import zarr

    return zarr


def _tifffile() -> Any:
    """tifffile, with its log quiet: a damaged file is reported once, as poolcli's one line."""
    import logging

    import tifffile

    logging.getLogger("tifffile").setLevel(logging.CRITICAL + 1)
    return tifffile


def zarr_major() -> int:
    return int(_zarr().__version__.split(".")[0])


def _zarr_format_args(zarr_format: int) -> dict:
    if zarr_major() >= 3:
        return {"zarr_format": zarr_format}
    if zarr_format != 2:
        raise TiledError("Zarr v3 needs Python 3.11 or later (zarr 3); zarr 2, on this Python, reads Zarr v2 only")
    return {}


def _format_of(node: Any) -> int:
    metadata = getattr(node, "metadata", None)
    return int(getattr(metadata, "zarr_format", 2))


def create_array(root: Any, name: str | None, shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...],
                 zarr_format: int, path: Any = None, compress: bool = True) -> Any:
    """A new Zarr array, in group ``root`` under ``name`` or alone at ``path`` (a folder or a
    store, :meth:`ZarrTarget.store`); zarr's default
    compressor, or none (``compress=False``: scratch levels read back once)."""
    zarr = _zarr()
    kwargs: dict[str, Any] = dict(shape=shape, dtype=dtype, chunks=chunks, fill_value=0)
    if not compress:
        kwargs["compressors" if zarr_major() >= 3 else "compressor"] = None
    if root is not None:
        if zarr_major() >= 3:
            return root.create_array(name, **kwargs)
        return root.create_dataset(name, **kwargs)
    return zarr.open_array(path if not isinstance(path, Path) else str(path), mode="w", **kwargs,
                           **_zarr_format_args(zarr_format))


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------


class ChunkedReader:
    """One (C, H, W) image of a chunked array: reads rows (and optionally some channels only).
    ``kind`` ("Zarr", or "TIFF" for a TIFF read through ``aszarr``) words a chunk that fails."""

    def __init__(self, array: Any, index: Callable[[slice | list[int], slice], tuple], shape: tuple[int, int, int],
                 channels_last: bool, kind: str = "Zarr"):
        self.array = array
        self.index = index  # (channels, rows) -> selection in the array
        self.shape = shape
        self.dtype = np.dtype(array.dtype)
        self.channels_last = channels_last
        self.kind = kind

    def fetch(self, selection: tuple, get: Callable[[], Any]) -> np.ndarray:
        """``get()`` (reading ``selection``) as an array; data that fails to decode is a
        :class:`TiledError` that names the chunk (storage errors pass through as they are)."""
        try:
            return np.asarray(get())
        except (OSError, MemoryError):
            raise
        except Exception as error:  # codecs raise their own types for damaged data
            raise TiledError(_chunk_failure(self.array, selection, error, self.kind)) from None

    def read(self, top: int, bottom: int) -> np.ndarray:
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


def _chunk_failure(array: Any, selection: tuple, error: Exception, kind: str) -> str:
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


class TiffPageReader:
    """Rows of one TIFF page, decoded segment by segment with tifffile's own decoder.

    Only the tiles or strips covering the rows asked for are read (in file order) and decoded,
    on the engine's threads: tifffile's codecs release the GIL.  (Reading through ``aszarr()``
    and zarr gives the same pixels at a fraction of the speed for thousands of small tiles.)
    """

    def __init__(self, page: Any, shape: tuple[int, int, int], planar: bool):
        self.page = page
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
            raise TiledError(f"damaged TIFF: {len(page.dataoffsets)} of {expected} "
                             f"{'tile' if page.is_tiled else 'strip'} offsets")
        self.decode = page.decode
        self.decode_args: dict[str, Any] = {"_fullsize": bool(page.is_tiled)}
        if page.compression in (6, 7, 34892, 33007):  # JPEG: tables live in the page
            self.decode_args.update(jpegtables=page.jpegtables, jpegheader=page.jpegheader)

    def read(self, top: int, bottom: int, channels: list[int] | None = None) -> np.ndarray:
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
        offsets = [self.page.dataoffsets[i] for i in indices]
        counts = [self.page.databytecounts[i] for i in indices]
        where = {index: k for k, index in enumerate(indices)}

        def place(item: tuple[bytes | None, int]) -> None:
            data, index = item
            try:
                segment, (_, _, y, x, _), _ = self.decode(data, index, **self.decode_args)
            except Exception as error:  # codecs raise their own types for damaged data
                raise TiledError(f"damaged TIFF data in segment {index} ({type(error).__name__}: {error})") from None
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

        handle = self.page.parent.filehandle
        for batch in handle.read_segments(offsets, counts, indices, sort=True, flat=False):
            threads = min(engine.get_num_threads(), len(batch))
            if threads > 1:
                list(engine._executor(threads).map(place, batch))
            else:
                for item in batch:
                    place(item)
        return out if self.planar else out.transpose(2, 0, 1)

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
    reader: ChunkedReader | TiffPageReader | None = field(default=None, repr=False)

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

    def open(self) -> ChunkedReader | TiffPageReader:
        series = self.handle.series[0]
        page = series.levels[0].keyframe
        if len(series.levels[0].pages) == 1 and page.dataoffsets and not page.is_subsampled:
            self.reader = TiffPageReader(page, self.shape, self.planar)
            return self.reader
        zarr = _zarr()
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

        self.reader = ChunkedReader(array, index, self.shape, channels_last, kind="TIFF")
        return self.reader

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


# A remote TIFF is read through fsspec in blocks of this size (a tile row's segments, usually).
_REMOTE_BLOCK = 4 << 20


def open_tiff(path: str, storage_options: str | None = None) -> TiffInput | None:
    """Open a TIFF (a path, or a URL read by byte ranges) for streaming; ``None`` when it is not
    one image of (C, H, W) pixels (several frames, or a layout only Pillow's path reads)."""
    tifffile = _tifffile()
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
        raise TiledError(f"not a readable TIFF ({type(error).__name__}: {error})") from None
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
        # Samples or channels only: pages, Z, T, ... stay frames (Pillow's path, or an error there).
        if ("Y" not in axes or "X" not in axes or len(big) > 1 or any(n > 1 and a not in "SC" for a, n in others)
                or (len(handle.series) > 1 and not series.is_pyramidal)):
            handle.close()
            return None
        channels = big[0] if big else 1
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
            handle=handle)
    except DamagedTiff:
        handle.close()
        raise
    except Exception as error:  # a header tifffile opened but cannot make sense of
        handle.close()
        raise TiledError(f"not a readable TIFF ({type(error).__name__}: {error})") from None
    except BaseException:
        handle.close()
        raise


@dataclass
class ZarrInput:
    """A Zarr array (v2 or v3) or the full-resolution level of an OME-Zarr image.

    ``axes`` names every dimension: ``y``/``x`` are pooled, ``c`` holds channels, any other axis
    is a batch of images.  A plain array is (H, W), (C, H, W) or (N, C, H, W) as a ``.npy``."""

    path: str
    array: Any
    axes: tuple[str, ...]
    zarr_format: int
    ome: dict | None = None  # the multiscales entry of an OME-Zarr image
    ome_version: str | None = None

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def full_shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        shape = dict(zip(self.axes, self.full_shape, strict=True))
        return shape.get("c", 1), shape["y"], shape["x"]

    def batches(self) -> list[tuple[int, ...]]:
        """Indices of every image along the batch axes."""
        sizes = [n for a, n in zip(self.axes, self.full_shape, strict=True) if a not in ("c", "y", "x")]
        return [tuple(i) for i in np.ndindex(*sizes)] if sizes else [()]

    def selection(self, batch: tuple[int, ...], channels: slice | list[int], rows: slice) -> tuple:
        picks = iter(batch)
        index: list[Any] = []
        for axis in self.axes:
            index.append(rows if axis == "y" else slice(None) if axis == "x" else channels if axis == "c"
                         else next(picks))
        return tuple(index)

    def reader(self, batch: tuple[int, ...]) -> ChunkedReader:
        return ChunkedReader(self.array, lambda channels, rows: self.selection(batch, channels, rows),
                             self.image_shape, channels_last=False)

    def describe(self) -> str:
        kind = f"OME-Zarr {self.ome_version} image" if self.ome is not None else f"Zarr v{self.zarr_format} array"
        return f"{kind} of {self.dtype}, shape {self.full_shape} ({', '.join(self.axes)})"


def open_store(location: str, storage_options: str | None = None, read_only: bool = True) -> Any:
    """The zarr store of a local folder or an fsspec URL (``s3://bucket/a.zarr``, ``memory://...``).

    Raises
    ------
    poolcli.storage.StorageError
        For a URL that cannot be used (no fsspec, unknown protocol, bad options).
    """
    if not storage.is_url(location) or storage.is_local_url(location):
        return storage.local_path(location) if storage.is_url(location) else location
    if zarr_major() < 3:
        fs, path = storage.filesystem(location, storage_options)
        return fs.get_mapper(path)
    from zarr.storage import FsspecStore

    storage.filesystem(location, storage_options)  # fsspec and the protocol's package are there
    try:
        return FsspecStore.from_url(location, storage_options=storage.options_for(location, storage_options),
                                    read_only=read_only)
    except Exception as error:
        storage.raise_for(error, location)
        raise


def open_zarr(path: str, storage_options: str | None = None) -> ZarrInput:
    """Open a ``.zarr`` folder or URL: an array, or an OME-Zarr image (its first, full-resolution
    level)."""
    zarr = _zarr()
    if zarr_major() < 3 and (Path(path) / "zarr.json").is_file():  # zarr 2 would find "nothing at path ''"
        _zarr_format_args(3)  # raises: v3 needs Python 3.11 or later
    try:
        store = open_store(path, storage_options)
        node = zarr.open(store=store, mode="r") if zarr_major() >= 3 else zarr.open(store, mode="r")
    except storage.StorageError:
        raise
    except Exception as error:  # zarr raises many types for a damaged store
        storage.raise_for(error, path)
        raise TiledError(f"not a readable Zarr store ({type(error).__name__}: {error})") from None
    if hasattr(node, "shape"):
        ndim = len(node.shape)
        if ndim not in (2, 3, 4):
            raise TiledError(f"a .zarr array must have shape (H, W), (C, H, W) or (N, C, H, W), not {node.shape}")
        axes = {2: ("y", "x"), 3: ("c", "y", "x"), 4: ("n", "c", "y", "x")}[ndim]
        return ZarrInput(path, node, axes, _format_of(node))
    attributes = dict(node.attrs)
    ome = attributes.get("ome", attributes)  # NGFF 0.5 nests its metadata under "ome"
    multiscales = ome.get("multiscales")
    if not multiscales:
        raise TiledError("a Zarr group without OME-Zarr 'multiscales' metadata; give the path of an array")
    image = multiscales[0]
    version = str(ome.get("version", image.get("version", "0.4")))
    array = node[image["datasets"][0]["path"]]
    # NGFF 0.3 and older list axes as names, or not at all (then t, c, z, y, x, from the right)
    axes_meta = image.get("axes") or ("t", "c", "z", "y", "x")[-len(array.shape):]
    axes = tuple(str(a["name"] if isinstance(a, dict) else a).lower() for a in axes_meta)
    if "y" not in axes or "x" not in axes or len(axes) != len(array.shape):
        raise TiledError(f"OME-Zarr axes {axes} do not name y and x for shape {array.shape}")
    return ZarrInput(path, array, axes, _format_of(node), ome=image, ome_version=version)


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------

Strips = Iterable[tuple[int, int, np.ndarray]]


def _tiles(strips: Strips, shape: tuple[int, int, int], contig: bool, tile: int = TILE) -> Iterator[np.ndarray]:
    """Tiles in TIFF order, (tile, tile, S), from strips of any height: rows wait in a buffer
    until a whole row of tiles (or the image's last rows) is there."""
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
            for c in range(0, width, tile):
                block = band[:, :take, c: c + tile]
                whole = block.shape[1] == tile and block.shape[2] == tile
                out = (np.empty if whole else np.zeros)((tile, tile, depth), dtype=band.dtype)
                out[: block.shape[1], : block.shape[2]] = block.transpose(1, 2, 0)
                yield out
            rest = band[:, take:]
            pending = [rest] if rest.shape[1] else []
            buffered -= take
            done += take


@dataclass
class TiffLayout:
    """How a TIFF output stores its pixels (copied from the input where it can be)."""

    planar: bool = False
    photometric: str | int = "minisblack"
    extrasamples: tuple[int, ...] = ()
    compression: str | None = "zlib"

    @classmethod
    def like(cls, source: TiffInput) -> TiffLayout:
        photometric: str | int = source.photometric
        if source.photometric in (6, 7):  # YCbCr/JPEG: pixels come out as RGB
            photometric = "rgb"
        if source.photometric == 3:  # palette: indices pooled as numbers, written as gray
            photometric = "minisblack"
        compression = _KEEP_COMPRESSION.get(source.compression, "zlib")
        return cls(source.planar, photometric, source.extrasamples, compression)

    def write_args(self, shape: tuple[int, int, int], dtype: np.dtype) -> dict[str, Any]:
        channels, height, width = shape
        if self.planar:
            full: tuple[int, ...] = shape
        else:
            full = (height, width, channels) if channels > 1 else (height, width)
        args: dict[str, Any] = dict(shape=full, dtype=dtype, tile=(TILE, TILE), photometric=self.photometric,
                                    compression=self.compression)
        if channels > 1:
            args["planarconfig"] = "separate" if self.planar else "contig"
        if self.extrasamples:
            args["extrasamples"] = self.extrasamples
        return args


def channel_passes(layout: TiffLayout, channels: int) -> list[list[int] | None]:
    """Planar TIFFs store plane after plane: one pass per channel; interleaved: one pass."""
    return [[c] for c in range(channels)] if layout.planar and channels > 1 else [None]


def write_tiff(path: str | Path, shape: tuple[int, int, int], dtype: np.dtype, layout: TiffLayout,
               passes: Iterable[Strips], *, levels: Iterable[tuple[tuple[int, int, int], Iterable[Strips]]] = (),
               subifds: int = 0, ome: bool = False) -> None:
    """Write a tiled BigTIFF from strips (one strip sequence per channel pass), then optionally
    pyramid levels into SubIFDs.  ``path`` is written directly: callers use a temporary name."""
    tifffile = _tifffile()

    def all_tiles(strip_passes: Iterable[Strips], level_shape: tuple[int, int, int]) -> Iterator[np.ndarray]:
        for strips in strip_passes:
            yield from _tiles(strips, level_shape, contig=not layout.planar)

    if isinstance(layout.photometric, int) and layout.photometric not in set(tifffile.PHOTOMETRIC):
        raise TiledError(f"unsupported TIFF photometric {layout.photometric}: a TIFF output cannot say what its "
                         "pixels are; write .npy or .zarr")
    with tifffile.TiffWriter(path, bigtiff=True, ome=ome) as tif:
        args = layout.write_args(shape, dtype)
        extra: dict[str, Any] = {"subifds": subifds} if subifds else {}
        if ome:
            axes = ("CYX" if layout.planar else "YXS") if shape[0] > 1 else "YX"
            extra["metadata"] = {"axes": axes}
        else:
            extra["metadata"] = None
        tif.write(all_tiles(passes, shape), **args, **extra)
        for level_shape, level_passes in levels:
            tif.write(all_tiles(level_passes, level_shape), **layout.write_args(level_shape, dtype), subfiletype=1,
                      metadata=None)


def output_chunks(axes: tuple[str, ...], shape: tuple[int, ...], ome: bool) -> tuple[int, ...]:
    """Chunks of a Zarr output: one image and (OME, or many channels) one channel per chunk, and
    ZARR_CHUNK square in y and x."""
    chunks = []
    for axis, size in zip(axes, shape, strict=True):
        if axis in ("y", "x"):
            chunks.append(max(1, min(ZARR_CHUNK, size)))
        elif axis == "c":
            chunks.append(1 if ome or size > 4 else size)
        else:
            chunks.append(1)
    return tuple(chunks)


def open_reader(path: str, batch: tuple[int, ...] = (), storage_options: str | None = None,
                ) -> tuple[Any, Callable[[], None]]:
    """A reader of one (C, H, W) image of a TIFF (first series) or Zarr input, opened from its
    path or URL, and a function that closes it.

    For schedulers that run tasks elsewhere (Dask workers): ship the location, open the reader in
    the task, call :func:`poolcli.strips.pool_output_rows`, close.  ``batch`` picks the image of a
    Zarr array with batch axes (see :meth:`ZarrInput.batches`).
    """
    if is_zarr_path(path) or storage.is_zarr_url(path):
        source = open_zarr(path, storage_options)
        return source.reader(batch), lambda: None
    tiff = open_tiff(path, storage_options)
    if tiff is None:
        raise TiledError("not one image of (C, H, W) pixels: several pages or frames")
    return tiff.open(), tiff.close


# --------------------------------------------------------------------------------------------
# Zarr outputs, local or remote, and the strip task that writes them
# --------------------------------------------------------------------------------------------

_METADATA_NAMES = ("zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata")


def _is_metadata(key: str) -> bool:
    return key.rsplit("/", 1)[-1] in _METADATA_NAMES


def _held_store(store: Any, held: dict[str, bytes]) -> Any:
    """``store`` with its metadata documents held in ``held`` instead of written: chunks go to the
    store, metadata waits in memory until :meth:`ZarrTarget.publish` (object storage: a reader must
    never find an array whose chunks are still being written)."""
    from zarr.storage import WrapperStore

    class Held(WrapperStore[Any]):
        async def set(self, key: str, value: Any) -> None:
            if _is_metadata(key):
                held[key] = value.to_bytes()
            else:
                await self._store.set(key, value)

        async def set_if_not_exists(self, key: str, value: Any) -> None:
            if _is_metadata(key):
                held.setdefault(key, value.to_bytes())
            else:
                await self._store.set_if_not_exists(key, value)

        async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
            if key in held:
                data = held[key]
                return prototype.buffer.from_bytes(data)  # metadata is read whole
            if _is_metadata(key):
                return None  # an old store's metadata is not this output's
            return await self._store.get(key, prototype, byte_range)

        async def exists(self, key: str) -> bool:
            return key in held or (not _is_metadata(key) and await self._store.exists(key))

        def _with_store(self, store: Any) -> Any:
            return _held_store(store, held)

    return Held(store)


@dataclass
class ZarrTarget:
    """A Zarr output that any machine can open: a local folder (the temporary of a staged
    output) or a URL, and for object storage the metadata held back until the end."""

    location: str
    storage_options: str | None = field(default=None, repr=False)
    held: dict[str, bytes] | None = None  # None: metadata is written as it comes (a local folder)

    def store(self) -> Any:
        store = open_store(self.location, self.storage_options, read_only=False)
        return store if self.held is None else _held_store(store, self.held)

    def open_array(self, name: str) -> Any:
        zarr = _zarr()
        with storage.translated(self.location):
            if zarr_major() >= 3:
                return zarr.open_array(self.store(), path=name, mode="r+")
            return zarr.open_array(self.store(), path=name, mode="r+")

    def publish(self) -> None:
        """Write the held metadata: the arrays' first, the root group's last."""
        if not self.held:
            return
        fs, root = storage.filesystem(self.location, self.storage_options)
        with storage.translated(self.location):
            for key in sorted(self.held, key=lambda k: (-k.count("/"), k)):
                fs.pipe_file(f"{root.rstrip('/')}/{key}", self.held[key])


@contextlib.contextmanager
def zarr_output(output: str, storage_options: str | None, make_folders: bool = True) -> Iterator[ZarrTarget]:
    """Where a Zarr output is written, whole or not at all.

    A local store is a temporary folder beside the output, renamed into place by
    :func:`poolcli.paths.staged`.  On object storage the store is written in place with its
    metadata held back (:class:`ZarrTarget`) and published last; an existing store there is
    replaced, and on failure every key under the output is removed.
    """
    from poolcli import paths

    if not storage.is_url(output) or storage.is_local_url(output):
        local = storage.local_path(output) if storage.is_url(output) else output
        with paths.staged(local, directory=True, make_folders=make_folders or storage.is_url(output)) as temporary:
            yield ZarrTarget(os.path.abspath(temporary))  # workers elsewhere open it too
        return
    fs, root = storage.filesystem(output, storage_options)
    target = ZarrTarget(output, storage_options, held={} if zarr_major() >= 3 else None)
    with storage.translated(output):
        if fs.exists(root):
            fs.rm(root, recursive=True)  # an old store's chunks must not show through the new array
    try:
        yield target
        target.publish()
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(root, recursive=True)
        raise


@dataclass
class StripTask:
    """Output rows ``[o0, o1)`` of one image, computed from its input rows and written into the
    output array's chunks: the unit of work of a giant image, here or on a Dask worker.

    The input and output are opened on first use in each process (and not pickled)."""

    source: str
    storage_options: str | None = field(repr=False)
    batch: tuple[int, ...]
    rule: Any  # strips.Rule
    target: ZarrTarget
    array_name: str
    axes: tuple[str, ...]
    _opened: Any = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_opened"] = None
        return state

    def __call__(self, o0: int, o1: int) -> int:
        from poolcli import strips

        if self._opened is None:
            reader, close = open_reader(self.source, self.batch, self.storage_options)
            self._opened = (reader, close, self.target.open_array(self.array_name))
        reader, _, array = self._opened
        rows = strips.pool_output_rows(reader, self.rule, o0, o1)
        picks = iter(self.batch)
        selection = tuple(slice(o0, o1) if a == "y" else slice(None) if a in ("x", "c") else next(picks)
                          for a in self.axes)
        with storage.translated(self.target.location):
            array[selection] = rows if "c" in self.axes else rows[0]
        return o1 - o0

    def close(self) -> None:
        if self._opened is not None:
            self._opened[1]()
            self._opened = None
