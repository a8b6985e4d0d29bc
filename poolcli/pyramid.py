"""``poolcli pyramid``: level 0 (the input) and pooled levels, each from the one above, strip by
strip, into an OME-Zarr (NGFF 0.5 on Zarr v3, or 0.4 on Zarr v2) or a pyramidal OME-TIFF (levels
in SubIFDs); a GeoTIFF's pyramid is a GeoTIFF with its levels as GDAL overviews.

What the input says about its pixels is kept: an OME-TIFF's or OME-Zarr's channels, units and
physical pixel size (:mod:`poolcli.ome`), a GeoTIFF's georeferencing on every level
(:mod:`poolcli.geo`) and its nodata value.

May import: NumPy, ``giant``, ``strips``, ``tiff_io``, ``zarr_io``, ``ome``, ``paths`` and
``storage`` at import time; Pillow through ``images`` only for a pyramid of an ordinary image.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from poolcli import paths, storage, strips
from poolcli.chunked import ChannelPick, ahead
from poolcli.errors import GiantImageError
from poolcli.formats import is_tiff_name, is_tiff_path, is_zarr_path, stream_byte_limit
from poolcli.giant import (
    STDIO,
    check_target,
    geo_output,
    guard,
    ngff_levels,
    ome_description,
    pixel_rule,
    with_nodata,
    write_file,
)
from poolcli.ome import ngff_attributes
from poolcli.params import PoolParams
from poolcli.results import Result
from poolcli.tiff_io import TILE, TiffInput, TiffLayout, channel_passes, open_tiff, write_tiff
from poolcli.zarr_io import (
    ZARR_CHUNK,
    RawChunkWriter,
    ZarrInput,
    create_array,
    is_compressed,
    ngff_version,
    open_group,
    open_zarr,
    output_chunks,
    zarr_output,
)

_STRIP_BYTES = 16 << 20

# A pyramid's OME-Zarr chunks, y and x, where the memory limit allows: a quarter of the files of
# ZARR_CHUNK's (one file costs more than its 256 KiB of uint8: 16,000 files of a 16384² RGB
# pyramid took most of its time).
PYRAMID_CHUNK = 2 * ZARR_CHUNK


def _pick(reader: Any, picks: list[int]) -> Any:
    if hasattr(reader, "channels"):
        return reader.channels(picks)
    return strips.ArrayReader(reader.read(0, reader.shape[1])[picks]) if reader.shape[0] > 1 else reader


def _copy_strips(reader: Any, memory_limit: int, align: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Level 0: the input's rows, strip by strip.  A row counts four times: the reader's raw bytes
    and decoded rows, and the writer's chunk copies (zarr encodes a strip's chunks at once)."""
    channels, height, width = reader.shape
    per_row = max(1, 4 * channels * width * reader.dtype.itemsize)
    rows = max(1, (memory_limit - strips._RESERVE) // per_row)
    # ... and no strip over _STRIP_BYTES: larger arrays are the system's fresh pages every time
    # (glibc maps anything over 32 MiB anew), which cost more to fault in than to fill
    rows = min(rows, max(align, _STRIP_BYTES // (per_row // 4) // align * align))
    rows = rows // align * align if rows >= align else rows
    for r0 in range(0, height, rows):
        yield r0, min(height, r0 + rows), reader.read(r0, min(height, r0 + rows))


def _pyramid_input(source: str, params: PoolParams, options: Any, result: Result,
                   closers: list[Any]) -> tuple[Any, strips.Rule, bool, Any, Any]:
    """(reader, rule, input has a channel axis, TIFF layout or None, the Zarr or TIFF input or None)."""
    from poolcli import images

    remote = storage.is_url(source) and not storage.is_local_url(source)
    if source != STDIO and (is_zarr_path(source) or storage.is_zarr_url(source)):
        z = open_zarr(source, options.storage_options)
        result.description, result.dtype, result.full_input_shape = z.describe(), str(z.dtype), z.full_shape
        if len(z.batches()) > 1:
            raise GiantImageError(f"a pyramid is built from one image; this array holds {len(z.batches())} "
                             f"(shape {z.full_shape}, axes {', '.join(z.axes)})")
        rule = strips.Rule(params)
        if getattr(options, "nodata", None) is not None:  # arrays stay torch-exact unless told
            rule = with_nodata(rule, options.nodata, None, z.dtype)
        return z.reader(z.batches()[0]), rule, "c" in z.axes, None, z
    if remote and is_tiff_name(source):
        info = open_tiff(source, options.storage_options)
        if info is not None:
            return _tiff_pyramid_input(info, params, options, result, closers)
    data: Any = source
    if remote:
        data = storage.read_bytes(source, options.storage_options, stream_byte_limit(options.max_pixels))
    elif source == STDIO or not Path(source).is_file():
        raise GiantImageError("no such file" if source != STDIO and not Path(source).exists()
                         else "a pyramid is built from a file or a .zarr folder")
    elif Path(source).stat().st_size == 0:
        raise GiantImageError("empty file")
    if source.lower().endswith(".npy"):
        try:
            array = np.load(io.BytesIO(data) if remote else source, mmap_mode=None if remote else "r",
                            allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise GiantImageError(f"not a readable .npy array ({error})") from None
        result.description, result.dtype, result.full_input_shape = f"array of {array.dtype}", str(array.dtype), \
            tuple(array.shape)
        if array.ndim == 4 and array.shape[0] == 1:
            array = array[0]
        if array.ndim not in (2, 3):
            raise GiantImageError(f"a pyramid is built from one (H, W) or (C, H, W) array, not shape {array.shape}")
        return strips.ArrayReader(array), strips.Rule(params), array.ndim == 3, None, None
    if not remote and is_tiff_path(source):
        info = open_tiff(source)
        if info is not None:
            return _tiff_pyramid_input(info, params, options, result, closers)
    picture = images.decode(data, auto_orient=options.auto_orient, max_pixels=options.max_pixels)
    if len(picture.frames) > 1:
        raise GiantImageError(f"a pyramid is built from one image; this file has {len(picture.frames)} frames")
    frame = picture.frames[0].to_array()
    result.description = f"{images.describe_mode(picture.mode)} image, {frame.dtype}"
    result.dtype = str(frame.dtype)
    rule = strips.Rule(params, pixels=True, has_alpha=picture.has_alpha, premultiply=options.premultiply,
                       linear=options.linear and params.spec.averages)
    channels = frame.shape[2]
    photometric = "rgb" if channels in (3, 4) and frame.dtype.kind == "u" else "minisblack"
    extrasamples = (2,) if picture.has_alpha else ()
    layout = TiffLayout(False, photometric, extrasamples, "zlib")
    return strips.ArrayReader(frame, channels_last=True), rule, True, layout, None


def _tiff_pyramid_input(info: TiffInput, params: PoolParams, options: Any, result: Result,
                        closers: list[Any]) -> tuple[Any, strips.Rule, bool, Any, Any]:
    guard(info, options.memory_limit, options.max_pixels)
    result.description, result.dtype = info.describe(), str(info.dtype)
    rule = pixel_rule(info, params, options.premultiply, options.linear)
    rule = with_nodata(rule, getattr(options, "nodata", None), info.geo.gdal_nodata if info.geo else None,
                       info.dtype)
    closers.append(info.close)
    return info.open(), rule, True, TiffLayout.like(info), info


@contextlib.contextmanager


def _scratch(output: str) -> Iterator[Path]:
    """A folder for work that is never committed: beside a local output (a killed run's is removed
    by the next run for it), in the system's temporary folder for a URL."""
    if storage.is_url(output) and not storage.is_local_url(output):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="poolcli-") as folder:
            yield Path(folder)
        return
    with paths.scratch(storage.local_path(output) if storage.is_url(output) else output) as folder:
        yield Path(folder)


def plan_levels(shape: tuple[int, int, int], params: PoolParams, levels: int) -> list[tuple[int, int, int]]:
    """The (C, H, W) of level 0 and of ``levels`` pooled levels; ``levels < 1``: automatic, as
    libvips does, until a level fits in one tile (``TILE`` square), or no further level can be pooled.

    Examples
    --------
    >>> [s[1:] for s in plan_levels((3, 1000, 600), PoolParams("max", (2, 2)), 0)]
    [(1000, 600), (500, 300), (250, 150)]
    >>> len(plan_levels((1, 200, 200), PoolParams("max", (2, 2)), 0))
    1
    """
    shapes = [shape]
    automatic = levels < 1
    while (len(shapes) <= levels) if not automatic else (shapes[-1][1] > TILE or shapes[-1][2] > TILE):
        try:
            following = strips.output_shape(shapes[-1], params)
        except ValueError as error:
            if automatic:
                break
            raise GiantImageError(f"level {len(shapes)} of {levels} cannot be pooled ({error}); "
                                  f"use --levels {len(shapes) - 1} or a smaller kernel") from None
        if automatic and following[1] * following[2] * 4 > shapes[-1][1] * shapes[-1][2] * 3:
            raise GiantImageError(f"level {len(shapes)} is not much smaller than the level above "
                                  f"({following[1]}x{following[2]} from {shapes[-1][1]}x{shapes[-1][2]}): "
                                  "give --levels N, or a stride that shrinks each level")
        shapes.append(following)
    return shapes


def run_pyramid(source: str, output: str, params: PoolParams, options: Any, result: Result,
                progress: strips.Progress | None = None) -> None:
    """``poolcli pyramid``: level 0 (the input) and ``options.pyramid_levels`` levels (automatic
    below 1: :func:`plan_levels`), each pooled from the one above, strip by strip, into an
    OME-Zarr (NGFF 0.4) or a pyramidal OME-TIFF.  ``progress`` hears of every row of tiles of
    every level, as it is pooled."""
    strips.reuse_freed_memory()
    closers: list[Any] = []
    try:
        _run_pyramid(source, output, params, options, result, closers, progress)
    finally:
        for close in closers:
            close()


def _run_pyramid(source: str, output: str, params: PoolParams, options: Any, result: Result,
                 closers: list[Any], progress: strips.Progress | None) -> None:
    kind = check_target(output, None, ("ZARR", "TIFF"), "a pyramid")
    if options.indices_path:
        raise GiantImageError("--return-indices is not available for pyramids")
    reader, rule, has_channel_axis, layout, given = _pyramid_input(source, params, options, result, closers)
    z = given if isinstance(given, ZarrInput) else None
    tiff = given if isinstance(given, TiffInput) else None
    shapes = plan_levels(tuple(reader.shape), params, options.pyramid_levels)
    levels = len(shapes) - 1
    result.input_shape, result.output_shape = shapes[0], shapes[-1]
    result.levels = [list(s) for s in shapes]
    axes = ("c", "y", "x") if has_channel_axis else ("y", "x")
    dtype = np.dtype(reader.dtype)
    limit = options.memory_limit

    # Compression as asked (--compression), else as the input has it: an uncompressed input's
    # pixels are not worth a codec's time (tiles of noise barely shrink).
    compressed = (layout.compression is not None) if layout is not None else z is not None and is_compressed(z.array)

    # Large chunks where the memory limit holds strips of whole large-chunk rows; else the usual
    # ones (a strip must never straddle chunk rows it cannot hold: they would wait in memory).
    row_bytes = 4 * shapes[0][0] * shapes[0][2] * dtype.itemsize  # as _copy_strips counts a row
    chunk_side = PYRAMID_CHUNK if PYRAMID_CHUNK * row_bytes <= limit - strips._RESERVE else ZARR_CHUNK
    # ... and as many pixels per chunk either way: shorter chunks are wider (256x1024: a quarter
    # of the files of 256x256, which cost a 16384² 4-channel uint16 pyramid most of its time)
    chunk_width = PYRAMID_CHUNK * PYRAMID_CHUNK // chunk_side

    # An RGB(A) image's colours share their chunks (a file per chunk is most of an OME-Zarr's
    # cost); other channels (OME's) keep one chunk each, as viewers load them one by one.
    colour = layout is not None and layout.photometric in ("rgb", 2) and shapes[0][0] in (3, 4)

    def level_arrays(group: Any, zarr_format: int) -> list[Any]:
        arrays: list[Any] = []
        for full in shapes:
            shape = full if has_channel_axis else full[1:]
            chunks = output_chunks(axes, shape, ome=True, side=chunk_side, colour=colour, width=chunk_width)
            arrays.append(create_array(group, str(len(arrays)), shape, dtype, chunks, zarr_format,
                                       compress=compressed, level=options.compression, dimension_names=axes))
        return arrays

    if kind == "ZARR":
        version = ngff_version(getattr(options, "ngff", None))
        zarr_format = 3 if version == "0.5" else 2
        name = Path(source.rstrip("/")).name
        attributes = ngff_attributes(version, name, *ngff_levels(z, tiff, axes, params, len(shapes),
                                                                  dtype, result.notes))
        with zarr_output(output, options.storage_options) as out, storage.translated(output):
            group = open_group(out.store(), zarr_format)
            group.attrs.update(attributes)
            local = None if out.held is not None else out.location
            sinks = [_ChunkRows(array, has_channel_axis, RawChunkWriter.of(array, local) if local else None)
                     for array in level_arrays(group, zarr_format)]
            cascade = _Cascade(shapes, dtype, rule, sinks, progress)
            try:
                for _, _, rows in _copy_strips(reader, limit, chunk_side):
                    cascade.feed(0, rows)
                cascade.finish()
            except BaseException:
                cascade.abandon()  # no chunk file written after the temporary store is removed
                raise
        result.notes.append(f"written as an OME-Zarr image (NGFF {version}, Zarr v{zarr_format}), levels "
                            + " → ".join(str(tuple(s)) for s in shapes))
        return

    channels = shapes[0][0]
    if layout is None:  # arrays into a TIFF: planes, as OME-TIFF's CYX
        layout = TiffLayout(channels > 1, "minisblack", (), "zlib" if compressed else None)
    layout = layout.compressed(options.compression)
    pages = channels if layout.planar and channels > 1 else 1
    description = ome_description(tiff, None, shapes[0], pages, result.notes) if tiff is not None else None
    geo = tiff.geo if tiff is not None and description is None else None
    # A GeoTIFF's levels are reduced-resolution pages, GDAL's overviews; others go in SubIFDs (OME).
    subifds = 0 if geo is not None else levels
    georeferences = [geo_output(level, rule, pooled=False) for level in geo.levels(params, len(shapes))
                     ] if geo is not None else []
    with _scratch(output) as scratch:
        # Levels below 0 go to raw scratch files as they are pooled, read back once into the TIFF
        # after level 0 (a TIFF is written level after level).
        scratch_levels = [_RawLevel(scratch / f"level{n}.raw", shapes[n], dtype) for n in range(1, len(shapes))]
        cascade = _Cascade(shapes, dtype, rule, [_Discard(), *scratch_levels], progress)
        pass_picks = channel_passes(layout, channels)

        def level0() -> list[Iterator[tuple[int, int, np.ndarray]]]:
            if len(pass_picks) == 1:  # one pass over the input: level 0 written as the levels are pooled
                return [ahead(cascade.tap(_copy_strips(reader, limit, TILE)))]
            for _, _, rows in _copy_strips(reader, limit, TILE):  # planes: the levels first, then plane by plane
                cascade.feed(0, rows)
            cascade.finish()
            return passes(reader)

        def passes(level_reader: Any) -> list[Iterator[tuple[int, int, np.ndarray]]]:
            return [ahead(_copy_strips(level_reader if picks is None else _pick(level_reader, picks),
                                              limit, TILE)) for picks in pass_picks]

        below = [(shapes[n], _later(lambda n=n: passes(scratch_levels[n - 1]))) for n in range(1, len(shapes))]
        try:
            write_file(output, lambda path: write_tiff(
                path, shapes[0], dtype, layout, level0(), levels=below, subifds=subifds, ome=geo is None,
                description=description, geo=georeferences), options.storage_options)
        finally:
            cascade.abandon()  # (after finish: nothing left open; after a failure: the scratch files closed)
    what = "GeoTIFF (BigTIFF, levels as overviews)" if geo is not None else "OME-TIFF (BigTIFF, SubIFDs)"
    result.notes.append(f"written as a pyramidal tiled {what}, levels " + " → ".join(str(tuple(s)) for s in shapes))


def _later(make: Any) -> Iterator[Iterator[tuple[int, int, np.ndarray]]]:
    """The passes of a level, made only when the writer reaches it (its scratch file is whole by then)."""
    yield from make()


class _Rows:
    """Rows ``[top, bottom)`` of one level, held while the level below still needs them: a reader
    (:class:`poolcli.strips.Reader`) of the level for :func:`poolcli.strips.pool_output_rows`."""

    def __init__(self, shape: tuple[int, int, int], dtype: np.dtype):
        self.shape, self.dtype = shape, dtype
        self.top = 0
        self.data = np.empty((shape[0], 0, shape[2]), dtype=dtype)

    @property
    def bottom(self) -> int:
        return self.top + self.data.shape[1]

    def append(self, rows: np.ndarray) -> None:
        self.data = rows if not self.data.shape[1] else np.concatenate([self.data, rows], axis=1)

    def drop(self, before: int) -> None:
        """Forget the rows above ``before``."""
        cut = min(max(before - self.top, 0), self.data.shape[1])
        self.data, self.top = self.data[:, cut:], self.top + cut

    def read(self, top: int, bottom: int) -> np.ndarray:
        assert self.top <= top and bottom <= self.bottom, (top, bottom, self.top, self.bottom)
        return self.data[:, top - self.top: bottom - self.top]


class _Cascade:
    """Every level pooled while the rows of the level above arrive, in one pass over the input:
    as soon as the windows of some rows of level n+1 are complete, those rows are pooled (from the
    rows of level n held in a :class:`_Rows`) and handed to ``sinks[n + 1]`` (``sinks[0]`` takes
    level 0).  Memory: a strip of each level and the halo rows the next strip needs again.
    ``progress`` hears ("level N", rows of tiles done, rows of tiles in all) of each level."""

    def __init__(self, shapes: list[tuple[int, int, int]], dtype: np.dtype, rule: strips.Rule, sinks: list[Any],
                 progress: strips.Progress | None = None):
        self.shapes, self.rule, self.sinks, self.progress = shapes, rule, sinks, progress
        self.held = [_Rows(shape, dtype) for shape in shapes[:-1]]
        self.done = [0] * len(shapes)

    def feed(self, n: int, rows: np.ndarray) -> None:
        """The next rows of level ``n``, in order."""
        self.sinks[n].write(self.done[n], self.done[n] + rows.shape[1], rows)
        before = -(-self.done[n] // TILE)
        self.done[n] += rows.shape[1]
        if self.progress is not None and -(-self.done[n] // TILE) > before:
            self.progress(f"level {n}", -(-self.done[n] // TILE), -(-self.shapes[n][1] // TILE))
        if n + 1 == len(self.shapes):
            return
        held = self.held[n]
        held.append(rows)
        params, height = self.rule.params, self.shapes[n][1]
        out_height = self.shapes[n + 1][1]
        o0 = self.done[n + 1]
        if held.bottom >= height:
            o1 = out_height
        else:  # the last output row whose window ends within the rows held
            (sh, _), (ph, _), dh = params.effective_stride, params.padding, params.effective_dilation[0]
            o1 = min(out_height, (held.bottom + ph - dh * (params.kernel[0] - 1) - 1) // sh + 1)
        if o1 <= o0:
            return
        pooled = strips.pool_output_rows(held, self.rule, o0, o1)
        held.drop(strips.input_rows(params, height, o1, o1 + 1)[0] if o1 < out_height else held.bottom)
        self.feed(n + 1, pooled)

    def tap(self, pieces: Iterator[tuple[int, int, np.ndarray]]) -> Iterator[tuple[int, int, np.ndarray]]:
        """Level 0's strips, passed on (to the writer of level 0) and fed to the levels below."""
        for o0, o1, rows in pieces:
            self.feed(0, rows)
            yield o0, o1, rows
        self.finish()

    def finish(self) -> None:
        for sink in self.sinks:
            sink.close()

    def abandon(self) -> None:
        """After a failure: wait for writes under way, and keep quiet about them."""
        for sink in self.sinks:
            with contextlib.suppress(Exception):
                sink.abandon()


class _Discard:
    """Level 0 of a TIFF: written by the TIFF writer itself (see :meth:`_Cascade.tap`)."""

    def write(self, o0: int, o1: int, rows: np.ndarray) -> None:
        pass

    def close(self) -> None:
        pass

    def abandon(self) -> None:
        pass


class _ChunkRows:
    """One level of a Zarr output, written in whole chunk rows (no chunk is written twice): rows
    wait here until a chunk row is complete, or the level is."""

    def __init__(self, array: Any, has_channel_axis: bool, fast: RawChunkWriter | None = None):
        self.array, self.planes, self.fast = array, has_channel_axis, fast
        self.rows = int(array.chunks[-2])
        self.pending: list[np.ndarray] = []
        self.top = self.count = 0

    def write(self, o0: int, o1: int, rows: np.ndarray) -> None:
        self.pending.append(rows)
        self.count += rows.shape[1]
        if self.count >= self.rows:
            self._flush(self.count // self.rows * self.rows)

    def _flush(self, count: int) -> None:
        data = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending, axis=1)
        top, self.top = self.top, self.top + count
        if self.fast is not None:
            self.fast.write(top, data[:, :count] if self.planes else data[0, :count])
        elif self.planes:
            self.array[:, top:top + count] = data[:, :count]
        else:
            self.array[top:top + count] = data[0, :count]
        rest = data[:, count:]
        self.pending, self.count = ([rest] if rest.shape[1] else []), rest.shape[1]

    def close(self) -> None:
        if self.count:
            self._flush(self.count)
        if self.fast is not None:
            self.fast.wait()

    def abandon(self) -> None:
        if self.fast is not None:
            self.fast.wait()


class _RawLevel:
    """One level in a raw scratch file, row after row (H, W, C as a TIFF interleaves them): written
    as it is pooled, read back by rows (:class:`poolcli.strips.Reader`) into the TIFF; plain file
    reads, so the pages read are the system's cache, not this process's memory."""

    def __init__(self, path: Path, shape: tuple[int, int, int], dtype: np.dtype):
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        self.channels_last = True
        self.handle: Any = open(path, "wb")  # noqa: SIM115 (closed by close(), after the last rows)

    def write(self, o0: int, o1: int, rows: np.ndarray) -> None:
        np.ascontiguousarray(rows.transpose(1, 2, 0)).tofile(self.handle)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    abandon = close

    def read(self, top: int, bottom: int) -> np.ndarray:
        channels, _, width = self.shape
        with open(self.path, "rb") as handle:
            handle.seek(top * width * channels * self.dtype.itemsize)
            data = np.fromfile(handle, self.dtype, (bottom - top) * width * channels)
        return data.reshape(bottom - top, width, channels).transpose(2, 0, 1)

    def channels(self, picks: list[int]) -> ChannelPick:
        return ChannelPick(self, picks)  # type: ignore[arg-type]
