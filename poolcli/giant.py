"""Giant images, one job at a time: which TIFFs stream, and how a streamed TIFF or a Zarr is
pooled strip by strip and written (TIFF, Zarr or ``.npy``), here or on a strip runner's workers.

A TIFF streams (tifffile, chunk by chunk, :mod:`poolcli.strips`) when it is tiled, BigTIFF, OME,
planar, has more than 4 samples, 16-bit colour or float colour, or is larger than the memory
limit or the pixel limit; other TIFFs keep Pillow's path and its metadata handling.  A ``.zarr``
always streams.  Pixels (TIFF) follow :mod:`poolcli.pixels`; Zarr arrays follow torch; with a
nodata value (``--nodata``, or a GeoTIFF's GDAL_NODATA) both follow :mod:`poolcli.nodata`.  The
units of work (:class:`StripTask`, :class:`PassTask`) open their input and output themselves, so
a Dask worker runs them as they run here.

A GeoTIFF written as a TIFF, ``.npy`` or Zarr streams too, so that its georeferencing
(:mod:`poolcli.geo`) and nodata value go through one writer; an OME-TIFF's OME-XML
(:mod:`poolcli.ome`) describes the pooled pages.

May import: NumPy, ``strips``, ``tiff_io``, ``zarr_io``, ``geo``, ``ome``, ``nodata``, ``paths``
and ``storage`` at import time.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poolcli import nodata, paths, storage, strips
from poolcli.errors import GiantImageError
from poolcli.formats import is_zarr_path
from poolcli.geo import GeoReference
from poolcli.ome import OmeError, OmeImage, level_transforms, ngff_attributes, ngff_axes
from poolcli.params import PoolParams
from poolcli.results import Result
from poolcli.tiff_io import TILE, DamagedTiff, TiffInput, TiffLayout, channel_passes, open_tiff, write_tiff
from poolcli.zarr_io import (
    ZARR_CHUNK,
    ZarrInput,
    ZarrTarget,
    base_transform,
    create_array,
    input_axes,
    ngff_version,
    open_group,
    open_zarr,
    output_chunks,
    zarr_output,
)


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
        raise GiantImageError("not one image of (C, H, W) pixels: several pages or frames")
    return tiff.open(), tiff.close


@dataclass
class StripTask:
    """Output rows ``[o0, o1)`` of one image, computed from its input rows and written into the
    output array's chunks: the unit of work of a giant image, here or on a Dask worker.

    The input and output are opened on first use in each process (and not pickled); ``close``
    lets them go."""

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

STDIO = "-"


def format_size(size: int) -> str:
    """``268435456`` → ``256 MiB``.

    Examples
    --------
    >>> format_size(3 << 30), format_size(1536)
    ('3 GiB', '1.5 KiB')
    """
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}" if size % factor else f"{size // factor} {unit}"
    return f"{size} bytes"


def open_if_streaming(source: str, memory_limit: int, max_pixels: int | None,
                      storage_options: str | None = None, output: str | None = None) -> TiffInput | None:
    """The TIFF (a path or a URL) opened for streaming, or ``None`` when Pillow's path should
    take it.  A GeoTIFF streams when ``output`` is a TIFF, ``.npy`` or Zarr (its georeferencing
    and nodata value are carried there)."""
    try:
        info = open_tiff(source, storage_options)
    except DamagedTiff:
        raise  # Pillow would trust the same damaged header
    except GiantImageError:
        return None  # let Pillow try, and say what is wrong in its own words
    if info is None:
        return None
    channels, height, width = info.shape
    whole = channels * height * width * info.dtype.itemsize
    streams = (info.tiled or info.bigtiff or info.ome or info.planar or channels > 4
               or (channels >= 3 and info.dtype.itemsize > 1) or (channels > 1 and info.dtype.kind == "f")
               or whole > memory_limit
               or bool(max_pixels and height * width > max_pixels)
               or (info.geo is not None and output is not None
                   and Path(output.rstrip("/")).suffix.lower() in (".tif", ".tiff", ".npy", ".zarr")))
    if not streams:
        info.close()
        return None
    return info


def check_target(output: str, file_format: str | None, allowed: tuple[str, ...], what: str) -> str:
    names = ", ".join("." + a.lower().replace("tiff", "tif") for a in allowed)
    if output == STDIO:
        raise GiantImageError(f"{what} is written to a file ({names}), not to standard output: give -o FILE")
    suffix = Path(output).suffix.lower()
    kind = {".tif": "TIFF", ".tiff": "TIFF", ".zarr": "ZARR", ".npy": "NPY"}.get(suffix, file_format or suffix)
    if file_format and suffix not in (".tif", ".tiff", ".zarr", ".npy"):
        kind = file_format
    if kind not in allowed:
        raise GiantImageError(f"{what} is written as {names}, not {kind or 'a file without extension'}")
    return kind


def guard(info: TiffInput, memory_limit: int, max_pixels: int | None) -> None:
    """The decompression-bomb guard, for what streaming holds at once: one row of tiles/strips."""
    channels, _, width = info.shape
    held = info.chunk_rows * width
    kind = "tiles" if info.tiled else "strips"
    if max_pixels and held > max_pixels:
        raise GiantImageError(f"one row of TIFF {kind} holds {info.chunk_rows}x{width} = {held} pixels, over the "
                         f"--max-pixels limit of {max_pixels} (a decompression-bomb guard); use --max-pixels 0 "
                         "for a trusted file")
    needed = held * channels * info.dtype.itemsize
    if needed > memory_limit:
        raise GiantImageError(f"one row of TIFF {kind} ({info.chunk_rows} rows) needs {format_size(needed)} in memory, "
                         f"over --memory-limit {format_size(memory_limit)}; raise --memory-limit")


def pixel_rule(info: TiffInput, params: PoolParams, premultiply: bool, linear: bool) -> strips.Rule:
    if linear and params.spec.averages:
        colours = info.shape[0] - (1 if info.has_alpha else 0)
        if info.dtype.kind != "u" or info.dtype.itemsize > 2 or colours not in (1, 3):
            raise GiantImageError(f"--linear needs sRGB pixels (8- or 16-bit gray or RGB), not {info.describe()}")
    # Associated alpha: colours are stored premultiplied already, so plain averages are right.
    # Float alpha has no integer weights to premultiply with: averaged plainly too.
    weighted = info.has_alpha and not info.associated_alpha and info.dtype.kind == "u"
    return strips.Rule(params, pixels=True, has_alpha=weighted,
                       premultiply=premultiply, linear=linear and params.spec.averages)


def with_nodata(rule: strips.Rule, option: str | None, declared: str | None, dtype: np.dtype) -> strips.Rule:
    """``rule`` with the nodata value of ``--nodata`` (``option``; ``"none"``: no nodata) or else
    the input's own (``declared``: GDAL_NODATA's text); refused before any pixel is read when
    the dtype cannot hold it.

    Examples
    --------
    >>> from poolcli.params import PoolParams
    >>> with_nodata(strips.Rule(PoolParams("avg", (2, 2))), None, "-9999", np.dtype(np.int16)).nodata
    -9999
    >>> with_nodata(strips.Rule(PoolParams("avg", (2, 2))), "none", "-9999", np.dtype(np.int16)).nodata is None
    True
    """
    try:
        value = nodata.checked(option if option is not None else declared, dtype)
    except nodata.NodataError as error:
        where = "--nodata" if option is not None else "the GDAL_NODATA tag"
        raise GiantImageError(f"{error} (from {where})") from None
    if value is not None and rule.linear:
        raise GiantImageError("--linear and a nodata value do not go together; give --nodata none")
    return dataclasses.replace(rule, nodata=value)


def geo_output(geo: GeoReference | None, rule: strips.Rule, pooled: bool = True) -> GeoReference | None:
    """The georeferencing of the output: placed by :meth:`GeoReference.pooled` (unless ``pooled``
    is False: a pyramid's levels are placed already), with the nodata value that pooling honoured
    (none when ``--nodata none`` mixed the input's nodata into the values)."""
    if geo is None:
        return None
    nodata = None if rule.nodata is None else repr(rule.nodata) if isinstance(rule.nodata, float) else str(rule.nodata)
    return dataclasses.replace(geo.pooled(rule.params) if pooled else geo, gdal_nodata=nodata)


def ome_description(info: TiffInput, params: PoolParams | None, shape: tuple[int, int, int], pages: int,
                    notes: list[str]) -> str | None:
    """The OME-XML of an OME-TIFF input, pooled (or as it is, ``params`` None) to ``shape``, when
    it describes the ``pages`` written; else None, with a note saying what was not carried."""
    if info.ome_xml is None:
        return None
    try:
        image = OmeImage.from_xml(info.ome_xml)
        if params is not None:
            image = image.pooled(params, shape[1], shape[2])
        if len(image.planes()) != pages:
            raise OmeError(f"it describes {len(image.planes())} planes, not the {pages} pages written")
        return image.to_xml()
    except OmeError as error:
        notes.append(f"the input's OME-XML is not carried over: {error}")
        return None


def ngff_levels(z: ZarrInput | None, tiff: TiffInput | None, axes: tuple[str, ...], params: PoolParams,
                 count: int, dtype: np.dtype, notes: list[str]) -> tuple[list[dict], list, PoolParams, dict | None]:
    """NGFF axes, level transforms, parameters and ``omero`` of a pyramid: units, physical pixel
    size, channel labels and colours from an OME-TIFF's OME-XML or an OME-Zarr input's own."""
    names = "".join(axes)
    axes_meta: list[dict] = ngff_axes(names)
    scale, translation = [1.0] * len(axes), [0.0] * len(axes)
    omero = None
    if z is not None and z.ome is not None:
        base = base_transform(z.ome, z.axes)
        keep = [z.axes.index(a) for a in axes]
        scale, translation = [base[0][i] for i in keep], [base[1][i] for i in keep]
        axes_meta = input_axes(z, axes) or axes_meta
        omero = z.omero
    elif tiff is not None and tiff.ome_xml is not None:
        try:
            image = OmeImage.from_xml(tiff.ome_xml)
            axes_meta, scale = image.ngff_axes(names), image.ngff_scale(names)
            value_range = (np.iinfo(dtype).min, np.iinfo(dtype).max) if dtype.kind in "ui" else (0.0, 1.0)
            omero = image.omero(value_range)
            if len(omero["channels"]) != (tiff.shape[0] if "c" in axes else 1):
                omero = None
            if image.sizes["Z"] * image.sizes["T"] > 1:
                notes.append("the OME-TIFF's Z and T planes are stacked along the c axis, in page order")
        except OmeError as error:
            notes.append(f"the input's OME-XML is not carried over: {error}")
    return axes_meta, level_transforms(names, scale, translation, params, count), params, omero


def pass_plan(reader: Any, rule: strips.Rule, picks: list[int] | None,
               channels: int) -> tuple[Any, strips.Rule, int | None]:
    """What one channel pass reads and how: all channels, or one plane of a planar TIFF (with
    alpha beside it when its average is weighted by alpha); the reader, the rule, and how many of
    the pooled channels to keep (None: all)."""
    if picks is None:
        return reader, rule, None
    channel = picks[0]
    alpha = channels - 1
    weighted = rule.has_alpha and rule.params.spec.averages and (rule.premultiply or rule.linear)
    if weighted and channel != alpha:
        return reader.channels([channel, alpha]), rule, 1
    single = dataclasses.replace(rule, has_alpha=False,
                                 linear=rule.linear and not (rule.has_alpha and channel == alpha))
    return reader.channels([channel]), single, None


def _channel_pass(reader: Any, rule: strips.Rule, picks: list[int] | None, memory_limit: int,
                  channels: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Strips of one channel pass (:func:`pass_plan`), computed here."""
    source, pass_rule, keep = pass_plan(reader, rule, picks, channels)
    for o0, o1, rows in strips.iter_strips(source, pass_rule, memory_limit, align=TILE):
        yield o0, o1, rows if keep is None else rows[:keep]


# The TIFF that PassTask copies opened, by (task, thread): kept for the next strip of the same
# task that the thread runs.  A Dask worker gets a fresh copy of the task for every strip, and
# opening a TIFF on object storage is a request of its own (a 4 MiB read-ahead block for the
# header): on a moto endpoint, a 20000² TIFF's header cost as much as a strip's tiles.
_OPENED: dict[tuple[str, int], tuple[Any, strips.Rule, int | None, Callable[[], None]]] = {}
_OPENED_LOCK = threading.Lock()


@dataclass
class PassTask:
    """Output rows ``[o0, o1)`` of one channel pass of a TIFF, computed where a strip runner puts
    it (a Dask worker opens the input itself) and sent back: a TIFF is written in order, by one
    writer, so its strips come back to the client.

    Each thread keeps the input it opened for the task's next strip (``token`` names the task
    in every copy; a thread that starts another task's strip closes what it kept), and
    :meth:`forget` closes it in this process at the end of the task's run."""

    source: str
    storage_options: str | None = field(repr=False)
    rule: strips.Rule
    picks: list[int] | None
    channels: int
    token: str = field(default_factory=lambda: uuid.uuid4().hex, repr=False)

    def __call__(self, o0: int, o1: int) -> tuple[int, int, np.ndarray]:
        reader, rule, keep, _ = self._opened()
        rows = strips.pool_output_rows(reader, rule, o0, o1)
        return o0, o1, rows if keep is None else rows[:keep]

    def _opened(self) -> tuple[Any, strips.Rule, int | None, Callable[[], None]]:
        thread = threading.get_ident()
        with _OPENED_LOCK:
            opened = _OPENED.get((self.token, thread))
            others = [key for key in _OPENED if key[1] == thread and key[0] != self.token]
            stale = [_OPENED.pop(key) for key in others]
        for *_, close in stale:
            close()
        if opened is None:
            reader, close = open_reader(self.source, (), self.storage_options)
            opened = (*pass_plan(reader, self.rule, self.picks, self.channels), close)
            with _OPENED_LOCK:
                _OPENED[(self.token, thread)] = opened
        return opened

    def forget(self) -> None:
        """Close the input this task's copies opened in this process (every thread's)."""
        with _OPENED_LOCK:
            mine = [_OPENED.pop(key) for key in [key for key in _OPENED if key[0] == self.token]]
        for *_, close in mine:
            close()


def run_tiff(info: TiffInput, output: str, params: PoolParams, options: Any, result: Result,
             runner: strips.StripRunner = strips.LOCAL, progress: strips.Progress | None = None) -> None:
    """Pool a streamed TIFF into a tiled BigTIFF (or .zarr / .npy), strip by strip; into a TIFF,
    the strips run on ``runner`` (here, or on a cluster's workers, then written here in order).
    ``progress`` hears of every strip done."""
    try:
        channels = info.shape[0]
        result.description, result.dtype = info.describe(), str(info.dtype)
        result.input_shape = info.shape
        kind = check_target(output, options.file_format, ("TIFF", "ZARR", "NPY"), "a streamed TIFF")
        if options.indices_path:
            raise GiantImageError("--return-indices is not available for streamed TIFF images")
        if getattr(options, "background", None) is not None:
            raise GiantImageError("--background is not available for streamed TIFF images; write a .tif (alpha kept)")
        guard(info, options.memory_limit, options.max_pixels)
        rule = pixel_rule(info, params, options.premultiply, options.linear)
        rule = with_nodata(rule, getattr(options, "nodata", None), info.geo.gdal_nodata if info.geo else None,
                           info.dtype)
        if rule.nodata is not None:
            result.notes.append(f"nodata {rule.nodata} left out of every window")
        out_shape = strips.output_shape(info.shape, params)
        result.output_shape = out_shape
        orientation = info.handle.pages[0].tags.get(274)  # Orientation
        if orientation is not None and orientation.value not in (0, 1):
            result.notes.append("the TIFF orientation tag is not applied to a streamed image")
        reader = info.open()
        layout = TiffLayout.like(info).compressed(options.compression)
        if kind == "TIFF":
            pass_picks = channel_passes(layout, channels)
            if runner is strips.LOCAL:
                passes = [_channel_pass(reader, rule, picks, options.memory_limit, channels) for picks in pass_picks]
                counts = [len(strips.plan_strips(out_shape[1], strips.strip_height(
                    pass_plan(reader, rule, picks, channels)[0].shape, info.dtype, params, options.memory_limit,
                    TILE))) for picks in pass_picks]
            else:  # one output tile row a task, each reading its own input rows on a worker
                ranges = strips.plan_strips(out_shape[1], TILE)
                passes = [runner.map(PassTask(absolute(info.path), options.storage_options, rule, picks, channels),
                                     ranges) for picks in pass_picks]
                counts = [len(ranges)] * len(passes)
            passes = [strips.counted(pieces, progress, "strips", sum(counts), sum(counts[:n]))
                      for n, pieces in enumerate(passes)]
            pages = channels if layout.planar and channels > 1 else 1
            description = ome_description(info, params, out_shape, pages, result.notes)
            geo = geo_output(info.geo, rule)
            write_file(output, lambda path: write_tiff(path, out_shape, info.dtype, layout, passes,
                                                       ome=pages > 1, description=description, geo=[geo]),
                        options.storage_options)
            compression = layout.compression or "uncompressed"
            arrangement = (", a page per channel" if pages > 1 else ", interleaved") if channels > 1 else ""
            kind_name = "OME-TIFF" if description is not None or pages > 1 else "GeoTIFF" if geo else "BigTIFF"
            result.notes.append(f"written as a tiled {kind_name}: {info.dtype}, {channels} channel"
                                f"{'s' if channels > 1 else ''}, {TILE}x{TILE} tiles, "
                                f"{compression}{arrangement}")
        else:
            ome = None
            if kind == "ZARR" and info.ome_xml is not None:  # an OME-TIFF gives an OME-Zarr image
                version = ngff_version(getattr(options, "ngff", None))
                levels = ngff_levels(None, info, ("c", "y", "x"), params, 2, info.dtype, result.notes)
                pooled = levels[1][1]
                ome = (version, ngff_attributes(version, Path(info.path).name, levels[0], [pooled], params, levels[3]))
                result.notes.append(f"written as an OME-Zarr image (NGFF {version})")
            total = len(strips.plan_strips(out_shape[1], strips.strip_height(
                info.shape, info.dtype, params, options.memory_limit, ZARR_CHUNK)))
            _write_arrays(output, kind, out_shape, info.dtype, strips.counted(
                strips.iter_strips(reader, rule, options.memory_limit, align=ZARR_CHUNK), progress, "strips", total),
                          options.storage_options, ome)
    finally:
        info.close()


def write_file(output: str, write: Any, storage_options: str | None = None) -> None:
    """One file written by path (a tiled TIFF, a memory-mapped .npy), committed by
    :func:`poolcli.paths.staged`; a URL output is written to a local temporary first, then
    uploaded whole (:func:`poolcli.storage.upload`)."""
    if storage.is_url(output) and not storage.is_local_url(output):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="poolcli-") as folder:
            local = Path(folder) / "output"
            write(local)
            storage.upload(str(local), output, storage_options)
        return
    # (a missing folder of a single output was refused before the work: this one is a folder run's)
    target = storage.local_path(output) if storage.is_url(output) else output
    with paths.staged(target, make_folders=True) as temporary, paths.written_back(temporary):
        write(Path(temporary))


def _write_arrays(output: str, kind: str, shape: tuple[int, int, int], dtype: np.dtype,
                  pooled: Iterator[tuple[int, int, np.ndarray]], storage_options: str | None,
                  ome: tuple[str, dict] | None = None) -> None:
    """One (C, OH, OW) image into a .npy (memory-mapped), a Zarr v2 array, or with ``ome``
    (NGFF version, group attributes) an OME-Zarr image of one level."""
    if kind == "NPY":
        def write(path: Path) -> None:
            target = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
            for o0, o1, rows in pooled:
                target[:, o0:o1] = rows
            target.flush()
            del target

        write_file(output, write, storage_options)
        return
    with zarr_output(output, storage_options) as out:
        if ome is None:
            target = create_array(None, None, shape, dtype, output_chunks(("c", "y", "x"), shape, False), 2,
                                  path=out.store())
        else:
            zarr_format = 3 if ome[0] == "0.5" else 2
            with storage.translated(output):
                group = open_group(out.store(), zarr_format)
                group.attrs.update(ome[1])
                target = create_array(group, "0", shape, dtype, output_chunks(("c", "y", "x"), shape, True),
                                      zarr_format, dimension_names=("c", "y", "x"))
        for o0, o1, rows in pooled:
            with storage.translated(output):
                target[:, o0:o1] = rows


def run_zarr(source: str, output: str, params: PoolParams, options: Any, result: Result,
             runner: strips.StripRunner = strips.LOCAL, progress: strips.Progress | None = None) -> None:
    """Pool every image of a Zarr array (torch's semantics), strip by strip, into .zarr or .npy.

    The input and a Zarr output may be local or on any fsspec store.  Into Zarr, the strips are
    :class:`StripTask` s run by ``runner`` (here, or on a Dask cluster's workers,
    each writing its own chunk rows); into .npy, they are computed here and written in order.
    ``progress`` hears of every strip done.
    """
    z = open_zarr(source, options.storage_options)
    result.description, result.dtype = z.describe(), str(z.dtype)
    result.full_input_shape, result.input_shape = z.full_shape, z.image_shape
    kind = check_target(output, None, ("ZARR", "NPY"), "a .zarr input")
    if options.indices_path:
        raise GiantImageError("--return-indices is not available for .zarr inputs")
    if options.linear:
        raise GiantImageError("--linear applies to images, not to arrays")
    rule = strips.Rule(params)
    if getattr(options, "nodata", None) is not None:  # arrays stay torch-exact unless told
        rule = with_nodata(rule, options.nodata, None, z.dtype)
    out_image = strips.output_shape(z.image_shape, params)
    result.output_shape = out_image
    sizes = {"y": out_image[1], "x": out_image[2]}
    out_full = tuple(sizes.get(a, n) for a, n in zip(z.axes, z.full_shape, strict=True))
    result.full_output_shape = out_full
    planes = "c" in z.axes

    batches = z.batches()
    if kind == "NPY":
        each = len(strips.plan_strips(out_image[1], strips.strip_height(
            z.image_shape, z.dtype, params, options.memory_limit, align=ZARR_CHUNK)))

        def write(path: Path) -> None:
            target = np.lib.format.open_memmap(path, mode="w+", dtype=z.dtype, shape=out_full)
            for n, batch in enumerate(batches):
                for o0, o1, rows in strips.counted(strips.iter_strips(z.reader(batch), rule, options.memory_limit,
                                                                      align=ZARR_CHUNK),
                                                   progress, "strips", each * len(batches), each * n):
                    target[z.selection(batch, slice(None), slice(o0, o1))] = rows if planes else rows[0]
            target.flush()

        write_file(output, write, options.storage_options)
        return

    # Strips of whole output chunk rows: no two tasks ever write one chunk.  Here, as many chunk
    # rows a strip as the memory limit allows; on a cluster, as few as read whole input chunk rows.
    height = strips.strip_height(z.image_shape, z.dtype, params, options.memory_limit, align=ZARR_CHUNK)
    if runner is not strips.LOCAL:
        height = strips.task_height(params, ZARR_CHUNK, int(z.array.chunks[z.axes.index("y")]), height)
    ranges = strips.plan_strips(out_image[1], height)
    version = zarr_format = None
    if z.ome is not None:  # the input's NGFF version unless --ngff says otherwise
        given = getattr(options, "ngff", None)
        version = ngff_version(given or (z.ome_version if z.ome_version in ("0.4", "0.5") else None))
        zarr_format = 3 if version == "0.5" else 2
    with zarr_output(output, options.storage_options) as out:
        chunks = output_chunks(z.axes, out_full, z.ome is not None)
        with storage.translated(output):
            if z.ome is None or version is None or zarr_format is None:
                create_array(None, None, out_full, z.dtype, chunks, z.zarr_format, path=out.store())
                name = ""
            else:
                group = open_group(out.store(), zarr_format)
                names = "".join(z.axes)
                pooled = level_transforms(names, *base_transform(z.ome, z.axes), params, 2)[1]
                group.attrs.update(ngff_attributes(
                    version, str(z.ome.get("name", Path(source.rstrip("/")).stem)),
                    input_axes(z) or ngff_axes(names), [pooled], params, z.omero))
                create_array(group, "0", out_full, z.dtype, chunks, zarr_format, dimension_names=z.axes)
                name = "0"
        for n, batch in enumerate(batches):
            task = StripTask(absolute(source), options.storage_options, batch, rule, out, name, z.axes)
            try:
                for _ in strips.counted(runner.map(task, ranges), progress, "strips", len(ranges) * len(batches),
                                        len(ranges) * n):
                    pass
            finally:
                task.close()
    what = f"an OME-Zarr {version} image" if z.ome is not None else f"a Zarr v{z.zarr_format} array"
    result.notes.append(f"written as {what} of {z.dtype}, shape {out_full}")


def absolute(location: str) -> str:
    """A location any worker can open: a local path made absolute (workers run elsewhere)."""
    return location if storage.is_url(location) else os.path.abspath(location)
