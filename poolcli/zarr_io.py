"""Zarr in and out, local or on any fsspec store, with zarr 2 or 3 (imported lazily): stores
(:func:`open_store`), inputs (:class:`ZarrInput`, also an OME-Zarr image's full resolution),
new arrays, outputs that appear whole (:func:`zarr_output`: a staged folder, or on object storage
metadata held back until every chunk is there); an OME-Zarr input's NGFF metadata is read here,
an output's is written by :mod:`poolcli.ome`.

zarr 2 (Python 3.10) and zarr 3 are both supported: the few calls that differ go through
:func:`zarr_format_args`.

May import: NumPy, ``chunked``, ``paths`` and ``storage`` at import time; zarr (this module and
``tiff_io`` alone) inside the functions that use it; fsspec through ``storage``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poolcli import paths, storage
from poolcli.chunked import ChunkedReader
from poolcli.errors import GiantImageError

ZARR_CHUNK = 256  # output Zarr chunks along y and x (strips are cut at multiples of it)


def load_zarr() -> Any:
    import zarr

    return zarr


def zarr_major() -> int:
    return int(load_zarr().__version__.split(".")[0])


def zarr_format_args(zarr_format: int) -> dict:
    if zarr_major() >= 3:
        return {"zarr_format": zarr_format}
    if zarr_format != 2:
        raise GiantImageError("Zarr v3 needs Python 3.11 or later (zarr 3); zarr 2, on this Python, reads Zarr v2 only")
    return {}


def format_of(node: Any) -> int:
    metadata = getattr(node, "metadata", None)
    return int(getattr(metadata, "zarr_format", 2))


def create_array(root: Any, name: str | None, shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...],
                 zarr_format: int, path: Any = None, compress: bool = True, level: int | None = None,
                 dimension_names: tuple[str, ...] | None = None) -> Any:
    """A new Zarr array, in group ``root`` under ``name`` or alone at ``path`` (a folder or a
    store, :meth:`ZarrTarget.store`); zarr's default compressor, none (``compress=False``), or
    deflate at ``level`` 1-9 (``--compression``, which overrides ``compress``; 0 is none).

    ``dimension_names`` (an OME-Zarr image's level) also gives NGFF's ``/`` chunk keys, and in
    Zarr v3 the names themselves, as NGFF 0.5 requires."""
    zarr = load_zarr()
    kwargs: dict[str, Any] = dict(shape=shape, dtype=dtype, chunks=chunks, fill_value=0)
    if dimension_names is not None:
        if zarr_major() < 3:
            kwargs["dimension_separator"] = "/"
        elif zarr_format == 2:
            kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        else:
            kwargs["dimension_names"] = list(dimension_names)  # v3's default chunk keys are "/" already
    key = "compressors" if zarr_major() >= 3 else "compressor"
    if level == 0 or (not compress and level is None):
        kwargs[key] = None
    elif level is not None:
        if zarr_major() >= 3 and zarr_format == 3:
            from zarr.codecs import GzipCodec

            kwargs[key] = GzipCodec(level=level)
        else:
            from numcodecs import Zlib  # type: ignore[import-untyped]

            kwargs[key] = Zlib(level=level)
    if root is not None:
        if zarr_major() >= 3:
            return root.create_array(name, **kwargs)
        return root.create_dataset(name, **kwargs)
    return zarr.open_array(path if not isinstance(path, Path) else str(path), mode="w", **kwargs,
                           **zarr_format_args(zarr_format))


class RawChunkWriter:
    """Whole chunk rows of a new local array that stores its chunks as raw bytes (no compressor,
    no filter, C order, little-endian), written straight into their chunk files, in the layout
    zarr itself writes (its own chunk keys): zarr's ``array[...] = data`` spends about a
    millisecond of Python per chunk, most of a pyramid's time for thousands of 256x256 chunks.

    :meth:`write` hands the files to a thread of :func:`poolcli.paths.io_pool` and returns: the
    next rows are pooled while these are written (one write waits for the one before, so one
    band is held at most; more threads writing at once only contend for the folders), and
    fsynced on the others.
    """

    def __init__(self, array: Any, root: str):
        self.chunks, self.shape = tuple(array.chunks), tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        self.fill = getattr(array.metadata, "fill_value", 0)
        self.encode = array.metadata.encode_chunk_key
        self.folder = os.path.join(root, array.path)
        self.made: set[str] = set()
        self.pending: Any = None

    @classmethod
    def of(cls, array: Any, root: str) -> RawChunkWriter | None:
        """A writer for ``array`` in the local store at ``root``, or ``None`` where zarr must
        encode the chunks itself."""
        import sys

        serializer = getattr(array, "serializer", None)
        endian = str(getattr(serializer, "endian", None) or "little").lower().rsplit(".", 1)[-1]
        if (zarr_major() < 3 or not callable(getattr(getattr(array, "metadata", None), "encode_chunk_key", None))
                or storage.is_url(root) or sys.byteorder != "little" or getattr(array, "filters", None)
                or is_compressed(array) or array.order != "C" or endian != "little"
                or (serializer is not None and type(serializer).__name__ != "BytesCodec")):
            return None
        return cls(array, root)

    def write(self, top: int, data: np.ndarray) -> None:
        """``data``: rows ``top:top + n`` along the second-last axis (``top`` a multiple of the
        chunk height), everything along the others."""
        self.wait()
        self.pending = paths.io_pool().submit(self._write, top, data)

    def wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def _write(self, top: int, data: np.ndarray) -> None:
        import itertools

        chunks, last = self.chunks, len(self.shape) - 2
        lead, (rows_per, cols_per) = chunks[:last], chunks[last:]
        rows, width = data.shape[last:]
        down = -(-rows // rows_per)
        # a column of chunks at a time, copied once into chunk order (each chunk then one
        # contiguous block): copying chunk by chunk from an interleaved image strides byte by
        # byte, twice as slow; edge chunks are stored whole, filled, as zarr does
        padded = tuple(-(-size // chunk) * chunk for size, chunk in zip(self.shape[:last], lead, strict=True))
        written = []
        for j in range(-(-width // cols_per)):
            x0 = j * cols_per
            part = data[..., x0: x0 + cols_per]
            ordered = np.empty((*padded, down * rows_per, cols_per), dtype=self.dtype)
            if ordered.shape[:last] != part.shape[:last] or part.shape[last:] != ordered.shape[last:]:
                ordered.fill(self.fill)
            ordered[tuple(slice(0, n) for n in part.shape)] = part
            for coords in itertools.product(*(range(n // c) for n, c in zip(padded, lead, strict=True))):
                for i in range(down):
                    where = [slice(k * c, (k + 1) * c) for k, c in zip(coords, lead, strict=True)]
                    block = ordered[tuple(where) + (slice(i * rows_per, (i + 1) * rows_per),)]
                    path = os.path.join(self.folder, *self.encode((*coords, top // rows_per + i, j)).split("/"))
                    parent = os.path.dirname(path)
                    if parent not in self.made:
                        os.makedirs(parent, exist_ok=True)
                        self.made.add(parent)
                    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
                    try:
                        view = np.ascontiguousarray(block).data.cast("B")
                        while view:  # (a short write: the disk is full; the next one says so)
                            view = view[os.write(descriptor, view):]
                    finally:
                        os.close(descriptor)
                    written.append(path)
        # to disk while the next rows are computed: the commit's fsyncs then find them clean
        pool = paths.io_pool()
        for path in written:
            pool.submit(paths.sync_file, path)


def is_compressed(array: Any) -> bool:
    """Does a Zarr array (v2 or v3, zarr 2 or 3) compress its chunks?"""
    codecs = getattr(array, "compressors", None)
    if codecs is None:
        codecs = [getattr(array, "compressor", None)]
    return any(codec is not None for codec in codecs)


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
    ome_attributes: dict | None = field(default=None, repr=False)  # its group's NGFF attributes

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
        rows = int(self.array.chunks[self.axes.index("y")])
        return ChunkedReader(self.array, lambda channels, rows: self.selection(batch, channels, rows),
                             self.image_shape, channels_last=False, band_rows=rows)

    @property
    def omero(self) -> dict | None:
        """An OME-Zarr image's ``omero`` block (channel labels, colours, windows), kept as it is."""
        return self.ome_attributes.get("omero") if self.ome_attributes else None

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
    zarr = load_zarr()
    if zarr_major() < 3 and (Path(path) / "zarr.json").is_file():  # zarr 2 would find "nothing at path ''"
        zarr_format_args(3)  # raises: v3 needs Python 3.11 or later
    try:
        store = open_store(path, storage_options)
        node = zarr.open(store=store, mode="r") if zarr_major() >= 3 else zarr.open(store, mode="r")
    except storage.StorageError:
        raise
    except Exception as error:  # zarr raises many types for a damaged store
        storage.raise_for(error, path)
        raise GiantImageError(f"not a readable Zarr store ({type(error).__name__}: {error})") from None
    if hasattr(node, "shape"):
        ndim = len(node.shape)
        if ndim not in (2, 3, 4):
            raise GiantImageError(f"a .zarr array must have shape (H, W), (C, H, W) or (N, C, H, W), not {node.shape}")
        axes = {2: ("y", "x"), 3: ("c", "y", "x"), 4: ("n", "c", "y", "x")}[ndim]
        return ZarrInput(path, node, axes, format_of(node))
    attributes = dict(node.attrs)
    ome = attributes.get("ome", attributes)  # NGFF 0.5 nests its metadata under "ome"
    multiscales = ome.get("multiscales")
    if not multiscales:
        raise GiantImageError("a Zarr group without OME-Zarr 'multiscales' metadata; give the path of an array")
    image = multiscales[0]
    version = str(ome.get("version", image.get("version", "0.4")))
    array = node[image["datasets"][0]["path"]]
    # NGFF 0.3 and older list axes as names, or not at all (then t, c, z, y, x, from the right)
    axes_meta = image.get("axes") or ("t", "c", "z", "y", "x")[-len(array.shape):]
    axes = tuple(str(a["name"] if isinstance(a, dict) else a).lower() for a in axes_meta)
    if "y" not in axes or "x" not in axes or len(axes) != len(array.shape):
        raise GiantImageError(f"OME-Zarr axes {axes} do not name y and x for shape {array.shape}")
    return ZarrInput(path, array, axes, format_of(node), ome=image, ome_version=version, ome_attributes=ome)


def output_chunks(axes: tuple[str, ...], shape: tuple[int, ...], ome: bool, side: int = ZARR_CHUNK,
                  colour: bool = False, width: int | None = None) -> tuple[int, ...]:
    """Chunks of a Zarr output: one image and (OME, or many channels) one channel per chunk, and
    ``side`` square in y and x (``width`` wide instead, given).  The channels of a ``colour``
    image (RGB(A), always shown together) share their chunks, OME or not: a third of the files.

    Examples
    --------
    >>> output_chunks(("c", "y", "x"), (3, 4096, 300), ome=True, side=512)
    (1, 512, 300)
    >>> output_chunks(("c", "y", "x"), (3, 4096, 300), ome=True, side=512, colour=True)
    (3, 512, 300)
    >>> output_chunks(("y", "x"), (4096, 4096), ome=True, side=256, width=1024)
    (256, 1024)
    """
    chunks = []
    for axis, size in zip(axes, shape, strict=True):
        if axis in ("y", "x"):
            chunks.append(max(1, min(width if axis == "x" and width is not None else side, size)))
        elif axis == "c":
            chunks.append(size if colour or not (ome or size > 4) else 1)
        else:
            chunks.append(1)
    return tuple(chunks)

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
        zarr = load_zarr()
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

def ngff_version(option: str | None) -> str:
    """The NGFF version an OME-Zarr output is written in: ``--ngff``'s, else 0.5 (Zarr v3) where
    the installed zarr writes v3, else 0.4 (Zarr v2)."""
    if option is not None:
        if option == "0.5" and zarr_major() < 3:
            raise GiantImageError("NGFF 0.5 is Zarr v3, which needs zarr>=3 (Python 3.11 or newer); give --ngff 0.4")
        return option
    return "0.5" if zarr_major() >= 3 else "0.4"


def base_transform(image: dict | None, axes: tuple[str, ...]) -> tuple[list[float], list[float]]:
    """Scale and translation of an input's full-resolution level (ones and zeros for arrays)."""
    scale, translation = [1.0] * len(axes), [0.0] * len(axes)
    if image is not None:
        for item in image["datasets"][0].get("coordinateTransformations", []):
            if item.get("type") == "scale":
                scale = [float(v) for v in item["scale"]]
            elif item.get("type") == "translation":
                translation = [float(v) for v in item["translation"]]
    return scale, translation


def input_axes(z: ZarrInput, keep: tuple[str, ...] | None = None) -> list[dict] | None:
    """An OME-Zarr input's axes metadata (names, types, units), for the axes kept."""
    meta = z.ome.get("axes") if z.ome is not None else None
    if not meta or not all(isinstance(a, dict) for a in meta):
        return None
    return [a for a in meta if keep is None or str(a.get("name", "")).lower() in keep]


def open_group(store: Any, zarr_format: int) -> Any:
    zarr = load_zarr()
    return zarr.open_group(store if not isinstance(store, Path) else str(store), mode="w",
                           **zarr_format_args(zarr_format))
