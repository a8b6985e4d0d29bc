"""``poolcli pyramid``: level 0 (the input) and pooled levels, each from the one above, strip by
strip, into an OME-Zarr (NGFF 0.4) or a pyramidal OME-TIFF (levels in SubIFDs).

May import: NumPy, ``giant``, ``strips``, ``tiff_io``, ``zarr_io``, ``paths`` and ``storage`` at
import time; Pillow through ``images`` only for a pyramid of an ordinary image.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from poolcli import paths, storage, strips
from poolcli.chunked import ChunkedReader
from poolcli.errors import GiantImageError
from poolcli.formats import is_tiff_name, is_tiff_path, is_zarr_path, stream_byte_limit
from poolcli.giant import STDIO, check_target, guard, pixel_rule, write_file
from poolcli.params import PoolParams
from poolcli.results import Result
from poolcli.tiff_io import TILE, TiffInput, TiffLayout, channel_passes, open_tiff, write_tiff
from poolcli.zarr_io import (
    NGFF_VERSION,
    ZARR_CHUNK,
    base_transform,
    create_array,
    input_axes,
    is_compressed,
    next_transform,
    ome_attributes,
    open_group,
    open_zarr,
    output_chunks,
    zarr_output,
)


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
    rows = rows // align * align if rows >= align else rows
    for r0 in range(0, height, rows):
        yield r0, min(height, r0 + rows), reader.read(r0, min(height, r0 + rows))


def _pyramid_input(source: str, params: PoolParams, options: Any, result: Result,
                   closers: list[Any]) -> tuple[Any, strips.Rule, bool, Any, Any]:
    """(reader, rule, input has a channel axis, TIFF layout or None, OME image metadata or None)."""
    from poolcli import images

    remote = storage.is_url(source) and not storage.is_local_url(source)
    if source != STDIO and (is_zarr_path(source) or storage.is_zarr_url(source)):
        z = open_zarr(source, options.storage_options)
        result.description, result.dtype, result.full_input_shape = z.describe(), str(z.dtype), z.full_shape
        if len(z.batches()) > 1:
            raise GiantImageError(f"a pyramid is built from one image; this array holds {len(z.batches())} "
                             f"(shape {z.full_shape}, axes {', '.join(z.axes)})")
        return z.reader(z.batches()[0]), strips.Rule(params), "c" in z.axes, None, z
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
    closers.append(info.close)
    return info.open(), rule, True, TiffLayout.like(info), None


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


def run_pyramid(source: str, output: str, params: PoolParams, options: Any, result: Result) -> None:
    """``poolcli pyramid``: level 0 (the input) and ``options.pyramid_levels`` levels (automatic
    below 1: :func:`plan_levels`), each pooled from the one above, strip by strip, into an
    OME-Zarr (NGFF 0.4) or a pyramidal OME-TIFF."""
    closers: list[Any] = []
    try:
        _run_pyramid(source, output, params, options, result, closers)
    finally:
        for close in closers:
            close()


def _run_pyramid(source: str, output: str, params: PoolParams, options: Any, result: Result,
                 closers: list[Any]) -> None:
    kind = check_target(output, None, ("ZARR", "TIFF"), "a pyramid")
    if options.indices_path:
        raise GiantImageError("--return-indices is not available for pyramids")
    reader, rule, has_channel_axis, layout, z = _pyramid_input(source, params, options, result, closers)
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

    def level_arrays(group: Any, zarr_format: int, first: int, compress: bool = True) -> list[Any]:
        arrays = []
        for n in range(first, len(shapes)):
            shape = shapes[n] if has_channel_axis else shapes[n][1:]
            chunks = output_chunks(axes, shape, ome=True)
            arrays.append(create_array(group, str(n), shape, dtype, chunks, zarr_format,
                                       compress=compress and compressed,
                                       level=options.compression if compress else None))
        return arrays

    def as_reader(array: Any) -> ChunkedReader:
        shape = tuple(array.shape) if has_channel_axis else (1, *array.shape)
        index = (lambda channels, rows: (channels, rows, slice(None))) if has_channel_axis \
            else (lambda channels, rows: (rows, slice(None)))
        return ChunkedReader(array, index, shape, channels_last=False,
                                   band_rows=int(array.chunks[-2 if has_channel_axis else 0]))

    def store(array: Any, pieces: Iterator[tuple[int, int, np.ndarray]]) -> None:
        for o0, o1, rows in pieces:
            if has_channel_axis:
                array[:, o0:o1] = rows
            else:
                array[o0:o1] = rows[0]

    def pool_levels(arrays: list[Any], previous: Any) -> None:
        """Level n from level n-1, already written: streaming all the way down."""
        for array in arrays:
            store(array, strips.iter_strips(previous, rule, limit, align=ZARR_CHUNK))
            previous = as_reader(array)

    base = base_transform(z.ome if z is not None else None, z.axes if z is not None else axes)
    if z is not None:
        keep = [z.axes.index(a) for a in axes]
        base = ([base[0][i] for i in keep], [base[1][i] for i in keep])
    transforms = [base]
    for _ in range(levels):
        transforms.append(next_transform(axes, *transforms[-1], params))

    if kind == "ZARR":
        with zarr_output(output, options.storage_options) as out, storage.translated(output):
            group = open_group(out.store(), 2)
            name = Path(source.rstrip("/")).name
            group.attrs.update(ome_attributes(NGFF_VERSION, name, axes, transforms, params,
                                              input_axes(z, axes) if z is not None else None))
            arrays = level_arrays(group, 2, 0)
            store(arrays[0], _copy_strips(reader, limit, ZARR_CHUNK))
            pool_levels(arrays[1:], as_reader(arrays[0]))
        result.notes.append(f"written as an OME-Zarr image (NGFF {NGFF_VERSION}, Zarr v2), levels "
                            + " → ".join(str(tuple(s)) for s in shapes))
        return

    if layout is None:  # arrays into a TIFF: planes, as OME-TIFF's CYX
        channels = shapes[0][0]
        layout = TiffLayout(channels > 1, "minisblack", (), "zlib" if compressed else None)
    layout = layout.compressed(options.compression)
    with _scratch(output) as scratch:
        group = open_group(scratch / "levels.zarr", 2)
        arrays = level_arrays(group, 2, 1, compress=False)  # scratch, read back once into the TIFF
        pool_levels(arrays, reader)
        channels = shapes[0][0]

        def passes(level_reader: Any) -> list[Iterator[tuple[int, int, np.ndarray]]]:
            return [_copy_strips(level_reader if picks is None else _pick(level_reader, picks), limit, TILE)
                    for picks in channel_passes(layout, channels)]

        below = [(shapes[n], passes(as_reader(arrays[n - 1]))) for n in range(1, len(shapes))]
        write_file(output, lambda path: write_tiff(
            path, shapes[0], dtype, layout, passes(reader), levels=below,
            subifds=levels, ome=True), options.storage_options)
    result.notes.append("written as a pyramidal tiled OME-TIFF (BigTIFF, SubIFDs), levels "
                        + " → ".join(str(tuple(s)) for s in shapes))
