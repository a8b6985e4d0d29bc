"""Giant images, one job at a time: which inputs stream, and how a streamed input is pooled,
written and described; also ``poolcli pyramid``.

A TIFF streams (tifffile, chunk by chunk, :mod:`poolcli.strips`) when it is tiled, BigTIFF, OME,
planar, has more than 4 samples, 16-bit colour or float colour, or is larger than the memory
limit or the pixel limit; other TIFFs keep Pillow's path and its metadata handling.  A ``.zarr``
folder always streams.  Pixels (TIFF) follow :mod:`poolcli.pixels`; Zarr arrays follow torch.

May import: NumPy, ``strips`` and ``tiled`` at import time (tifffile and zarr only through
``tiled``, when used); Pillow through ``images`` only for a pyramid of an ordinary image.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poolcli import paths, storage, strips, tiled
from poolcli.formats import is_tiff_name, is_tiff_path, is_zarr_path, stream_byte_limit
from poolcli.params import PoolParams, parse_size  # noqa: F401  (parse_size: also here)
from poolcli.results import Result
from poolcli.tiled import TiledError

STDIO = "-"
NGFF_VERSION = "0.4"  # OME-Zarr written by pyramid: zarr v2, read by napari/ome-zarr-py and QuPath


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
                      storage_options: str | None = None) -> tiled.TiffInput | None:
    """The TIFF (a path or a URL) opened for streaming, or ``None`` when Pillow's path should
    take it."""
    try:
        info = tiled.open_tiff(source, storage_options)
    except tiled.DamagedTiff:
        raise  # Pillow would trust the same damaged header
    except TiledError:
        return None  # let Pillow try, and say what is wrong in its own words
    if info is None:
        return None
    channels, height, width = info.shape
    whole = channels * height * width * info.dtype.itemsize
    streams = (info.tiled or info.bigtiff or info.ome or info.planar or channels > 4
               or (channels >= 3 and info.dtype.itemsize > 1) or (channels > 1 and info.dtype.kind == "f")
               or whole > memory_limit
               or bool(max_pixels and height * width > max_pixels))
    if not streams:
        info.close()
        return None
    return info


def _target(output: str, file_format: str | None, allowed: tuple[str, ...], what: str) -> str:
    names = ", ".join("." + a.lower().replace("tiff", "tif") for a in allowed)
    if output == STDIO:
        raise TiledError(f"{what} is written to a file ({names}), not to standard output: give -o FILE")
    suffix = Path(output).suffix.lower()
    kind = {".tif": "TIFF", ".tiff": "TIFF", ".zarr": "ZARR", ".npy": "NPY"}.get(suffix, file_format or suffix)
    if file_format and suffix not in (".tif", ".tiff", ".zarr", ".npy"):
        kind = file_format
    if kind not in allowed:
        raise TiledError(f"{what} is written as {names}, not {kind or 'a file without extension'}")
    return kind


def _guard(info: tiled.TiffInput, memory_limit: int, max_pixels: int | None) -> None:
    """The decompression-bomb guard, for what streaming holds at once: one row of tiles/strips."""
    channels, _, width = info.shape
    held = info.chunk_rows * width
    kind = "tiles" if info.tiled else "strips"
    if max_pixels and held > max_pixels:
        raise TiledError(f"one row of TIFF {kind} holds {info.chunk_rows}x{width} = {held} pixels, over the "
                         f"--max-pixels limit of {max_pixels} (a decompression-bomb guard); use --max-pixels 0 "
                         "for a trusted file")
    needed = held * channels * info.dtype.itemsize
    if needed > memory_limit:
        raise TiledError(f"one row of TIFF {kind} ({info.chunk_rows} rows) needs {format_size(needed)} in memory, "
                         f"over --memory-limit {format_size(memory_limit)}; raise --memory-limit")


def _pixel_rule(info: tiled.TiffInput, params: PoolParams, premultiply: bool, linear: bool) -> strips.Rule:
    if linear and params.op == "avg":
        colours = info.shape[0] - (1 if info.has_alpha else 0)
        if info.dtype.kind != "u" or info.dtype.itemsize > 2 or colours not in (1, 3):
            raise TiledError(f"--linear needs sRGB pixels (8- or 16-bit gray or RGB), not {info.describe()}")
    # Associated alpha: colours are stored premultiplied already, so plain averages are right.
    # Float alpha has no integer weights to premultiply with: averaged plainly too.
    weighted = info.has_alpha and not info.associated_alpha and info.dtype.kind == "u"
    return strips.Rule(params, pixels=True, has_alpha=weighted,
                       premultiply=premultiply, linear=linear and params.op == "avg")


def _pass_plan(reader: Any, rule: strips.Rule, picks: list[int] | None,
               channels: int) -> tuple[Any, strips.Rule, int | None]:
    """What one channel pass reads and how: all channels, or one plane of a planar TIFF (with
    alpha beside it when its average is weighted by alpha); the reader, the rule, and how many of
    the pooled channels to keep (None: all)."""
    if picks is None:
        return reader, rule, None
    channel = picks[0]
    alpha = channels - 1
    weighted = rule.has_alpha and rule.params.op == "avg" and (rule.premultiply or rule.linear)
    if weighted and channel != alpha:
        return reader.channels([channel, alpha]), rule, 1
    single = strips.Rule(rule.params, rule.pixels, has_alpha=False, premultiply=rule.premultiply,
                         linear=rule.linear and not (rule.has_alpha and channel == alpha))
    return reader.channels([channel]), single, None


def _channel_pass(reader: Any, rule: strips.Rule, picks: list[int] | None, memory_limit: int,
                  channels: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Strips of one channel pass (:func:`_pass_plan`), computed here."""
    source, pass_rule, keep = _pass_plan(reader, rule, picks, channels)
    for o0, o1, rows in strips.iter_strips(source, pass_rule, memory_limit, align=tiled.TILE):
        yield o0, o1, rows if keep is None else rows[:keep]


@dataclass
class PassTask:
    """Output rows ``[o0, o1)`` of one channel pass of a TIFF, computed where a strip runner puts
    it (a Dask worker opens the input itself) and sent back: a TIFF is written in order, by one
    writer, so its strips come back to the client."""

    source: str
    storage_options: str | None = field(repr=False)
    rule: strips.Rule
    picks: list[int] | None
    channels: int
    _opened: Any = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_opened": None}

    def __call__(self, o0: int, o1: int) -> tuple[int, int, np.ndarray]:
        if self._opened is None:
            reader, close = tiled.open_reader(self.source, (), self.storage_options)
            self._opened = (*_pass_plan(reader, self.rule, self.picks, self.channels), close)
        reader, rule, keep, _ = self._opened
        rows = strips.pool_output_rows(reader, rule, o0, o1)
        return o0, o1, rows if keep is None else rows[:keep]


def run_tiff(info: tiled.TiffInput, output: str, params: PoolParams, options: Any, result: Result,
             runner: strips.StripRunner = strips.LOCAL) -> None:
    """Pool a streamed TIFF into a tiled BigTIFF (or .zarr / .npy), strip by strip; into a TIFF,
    the strips run on ``runner`` (here, or on a cluster's workers, then written here in order)."""
    try:
        channels = info.shape[0]
        result.description, result.dtype = info.describe(), str(info.dtype)
        result.input_shape = info.shape
        kind = _target(output, options.file_format, ("TIFF", "ZARR", "NPY"), "a streamed TIFF")
        if options.indices_path:
            raise TiledError("--return-indices is not available for streamed TIFF images")
        if getattr(options, "background", None) is not None:
            raise TiledError("--background is not available for streamed TIFF images; write a .tif (alpha kept)")
        _guard(info, options.memory_limit, options.max_pixels)
        rule = _pixel_rule(info, params, options.premultiply, options.linear)
        out_shape = strips.output_shape(info.shape, params)
        result.output_shape = out_shape
        orientation = info.handle.pages[0].tags.get(274)  # Orientation
        if orientation is not None and orientation.value not in (0, 1):
            result.notes.append("the TIFF orientation tag is not applied to a streamed image")
        reader = info.open()
        layout = tiled.TiffLayout.like(info)
        if kind == "TIFF":
            if runner is strips.LOCAL:
                passes = [_channel_pass(reader, rule, picks, options.memory_limit, channels)
                          for picks in tiled.channel_passes(layout, channels)]
            else:  # one output tile row a task, each reading its own input rows on a worker
                ranges = strips.plan_strips(out_shape[1], tiled.TILE)
                passes = [runner.map(PassTask(_absolute(info.path), options.storage_options, rule, picks, channels),
                                     ranges) for picks in tiled.channel_passes(layout, channels)]
            _write_file(output, lambda path: tiled.write_tiff(path, out_shape, info.dtype, layout, passes),
                        options.storage_options)
            compression = layout.compression or "uncompressed"
            arrangement = (", planar" if layout.planar else ", interleaved") if channels > 1 else ""
            result.notes.append(f"written as a tiled BigTIFF: {info.dtype}, {channels} channel"
                                f"{'s' if channels > 1 else ''}, {tiled.TILE}x{tiled.TILE} tiles, "
                                f"{compression}{arrangement}")
        else:
            _write_arrays(output, kind, out_shape, info.dtype,
                          strips.iter_strips(reader, rule, options.memory_limit, align=tiled.ZARR_CHUNK),
                          options.storage_options)
    finally:
        info.close()


def _write_file(output: str, write: Any, storage_options: str | None = None) -> None:
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
    with paths.staged(storage.local_path(output) if storage.is_url(output) else output, make_folders=True) as temporary:
        write(Path(temporary))


def _write_arrays(output: str, kind: str, shape: tuple[int, int, int], dtype: np.dtype,
                  pooled: Iterator[tuple[int, int, np.ndarray]], storage_options: str | None) -> None:
    """One (C, OH, OW) image into a .npy (memory-mapped) or a Zarr v2 array."""
    if kind == "NPY":
        def write(path: Path) -> None:
            target = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
            for o0, o1, rows in pooled:
                target[:, o0:o1] = rows
            target.flush()
            del target

        _write_file(output, write, storage_options)
        return
    with tiled.zarr_output(output, storage_options) as out:
        target = tiled.create_array(None, None, shape, dtype, tiled.output_chunks(("c", "y", "x"), shape, False), 2,
                                    path=out.store())
        for o0, o1, rows in pooled:
            with storage.translated(output):
                target[:, o0:o1] = rows


# --------------------------------------------------------------------------------------------
# Zarr
# --------------------------------------------------------------------------------------------


def _axes_metadata(axes: tuple[str, ...]) -> list[dict]:
    kinds = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
    return [{"name": a, "type": kinds[a]} if a in kinds else {"name": a} for a in axes]


def _level_transform(axes: tuple[str, ...], scale: list[float], translation: list[float]) -> list[dict]:
    transform: list[dict] = [{"type": "scale", "scale": scale}]
    if any(translation):
        transform.append({"type": "translation", "translation": translation})
    return transform


def _base_transform(image: dict | None, axes: tuple[str, ...]) -> tuple[list[float], list[float]]:
    """Scale and translation of an input's full-resolution level (ones and zeros for arrays)."""
    scale, translation = [1.0] * len(axes), [0.0] * len(axes)
    if image is not None:
        for item in image["datasets"][0].get("coordinateTransformations", []):
            if item.get("type") == "scale":
                scale = [float(v) for v in item["scale"]]
            elif item.get("type") == "translation":
                translation = [float(v) for v in item["translation"]]
    return scale, translation


def _next_transform(axes: tuple[str, ...], scale: list[float], translation: list[float],
                    params: PoolParams) -> tuple[list[float], list[float]]:
    """A pooled level's pixel size and the position of its first pixel's centre."""
    scale, translation = list(scale), list(translation)
    dilation = params.dilation if params.op == "max" else (1, 1)
    for axis, a in ((0, "y"), (1, "x")):
        i = axes.index(a)
        effective = dilation[axis] * (params.kernel[axis] - 1) + 1
        translation[i] += scale[i] * ((effective - 1) / 2 - params.padding[axis])
        scale[i] *= params.effective_stride[axis]
    return scale, translation


def ome_attributes(version: str, name: str, axes: tuple[str, ...],
                   transforms: list[tuple[list[float], list[float]]], params: PoolParams | None,
                   axes_metadata: list[dict] | None = None) -> dict:
    """Group attributes of an OME-Zarr image with levels "0", "1", ... (NGFF 0.4 or 0.5);
    ``axes_metadata`` (an input's, with its units) replaces the plain axes."""
    image: dict[str, Any] = {
        "name": name,
        "axes": axes_metadata or _axes_metadata(axes),
        "datasets": [{"path": str(n), "coordinateTransformations": _level_transform(axes, s, t)}
                     for n, (s, t) in enumerate(transforms)],
    }
    if params is not None:
        image["type"] = f"{params.op} pooling"
        image["metadata"] = {"method": "poolcli", "parameters": params.as_json()}
    if version == "0.4":
        return {"multiscales": [{"version": "0.4", **image}]}
    return {"ome": {"version": version, "multiscales": [image]}}


def _input_axes(z: tiled.ZarrInput, keep: tuple[str, ...] | None = None) -> list[dict] | None:
    """An OME-Zarr input's axes metadata (names, types, units), for the axes kept."""
    meta = z.ome.get("axes") if z.ome is not None else None
    if not meta or not all(isinstance(a, dict) for a in meta):
        return None
    return [a for a in meta if keep is None or str(a.get("name", "")).lower() in keep]


def _open_group(store: Any, zarr_format: int) -> Any:
    zarr = tiled._zarr()
    return zarr.open_group(store if not isinstance(store, Path) else str(store), mode="w",
                           **tiled._zarr_format_args(zarr_format))


def run_zarr(source: str, output: str, params: PoolParams, options: Any, result: Result,
             runner: strips.StripRunner = strips.LOCAL) -> None:
    """Pool every image of a Zarr array (torch's semantics), strip by strip, into .zarr or .npy.

    The input and a Zarr output may be local or on any fsspec store.  Into Zarr, the strips are
    :class:`poolcli.tiled.StripTask` s run by ``runner`` (here, or on a Dask cluster's workers,
    each writing its own chunk rows); into .npy, they are computed here and written in order.
    """
    z = tiled.open_zarr(source, options.storage_options)
    result.description, result.dtype = z.describe(), str(z.dtype)
    result.full_input_shape, result.input_shape = z.full_shape, z.image_shape
    kind = _target(output, None, ("ZARR", "NPY"), "a .zarr input")
    if options.indices_path:
        raise TiledError("--return-indices is not available for .zarr inputs")
    if options.linear:
        raise TiledError("--linear applies to images, not to arrays")
    rule = strips.Rule(params)
    out_image = strips.output_shape(z.image_shape, params)
    result.output_shape = out_image
    sizes = {"y": out_image[1], "x": out_image[2]}
    out_full = tuple(sizes.get(a, n) for a, n in zip(z.axes, z.full_shape, strict=True))
    result.full_output_shape = out_full
    planes = "c" in z.axes

    if kind == "NPY":
        def write(path: Path) -> None:
            target = np.lib.format.open_memmap(path, mode="w+", dtype=z.dtype, shape=out_full)
            for batch in z.batches():
                for o0, o1, rows in strips.iter_strips(z.reader(batch), rule, options.memory_limit,
                                                       align=tiled.ZARR_CHUNK):
                    target[z.selection(batch, slice(None), slice(o0, o1))] = rows if planes else rows[0]
            target.flush()

        _write_file(output, write, options.storage_options)
        return

    # Strips of whole output chunk rows: no two tasks ever write one chunk.  Here, as many chunk
    # rows a strip as the memory limit allows; on a cluster, one chunk row a task.
    height = tiled.ZARR_CHUNK if runner is not strips.LOCAL else strips.strip_height(
        z.image_shape, z.dtype, params, options.memory_limit, align=tiled.ZARR_CHUNK)
    ranges = strips.plan_strips(out_image[1], height)
    with tiled.zarr_output(output, options.storage_options) as out:
        chunks = tiled.output_chunks(z.axes, out_full, z.ome is not None)
        with storage.translated(output):
            if z.ome is None:
                tiled.create_array(None, None, out_full, z.dtype, chunks, z.zarr_format, path=out.store())
                name = ""
            else:
                group = _open_group(out.store(), z.zarr_format)
                base = _base_transform(z.ome, z.axes)
                group.attrs.update(ome_attributes(
                    z.ome_version or NGFF_VERSION, str(z.ome.get("name", Path(source.rstrip("/")).stem)), z.axes,
                    [_next_transform(z.axes, *base, params)], params, _input_axes(z)))
                tiled.create_array(group, "0", out_full, z.dtype, chunks, z.zarr_format)
                name = "0"
        for batch in z.batches():
            task = tiled.StripTask(_absolute(source), options.storage_options, batch, rule, out, name, z.axes)
            try:
                for _ in runner.map(task, ranges):
                    pass
            finally:
                task.close()
    what = f"an OME-Zarr {z.ome_version} image" if z.ome is not None else f"a Zarr v{z.zarr_format} array"
    result.notes.append(f"written as {what} of {z.dtype}, shape {out_full}")


# --------------------------------------------------------------------------------------------
# Pyramids
# --------------------------------------------------------------------------------------------


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
        z = tiled.open_zarr(source, options.storage_options)
        result.description, result.dtype, result.full_input_shape = z.describe(), str(z.dtype), z.full_shape
        if len(z.batches()) > 1:
            raise TiledError(f"a pyramid is built from one image; this array holds {len(z.batches())} "
                             f"(shape {z.full_shape}, axes {', '.join(z.axes)})")
        return z.reader(z.batches()[0]), strips.Rule(params), "c" in z.axes, None, z
    if remote and is_tiff_name(source):
        info = tiled.open_tiff(source, options.storage_options)
        if info is not None:
            return _tiff_pyramid_input(info, params, options, result, closers)
    data: Any = source
    if remote:
        data = storage.read_bytes(source, options.storage_options, stream_byte_limit(options.max_pixels))
    elif source == STDIO or not Path(source).is_file():
        raise TiledError("no such file" if source != STDIO and not Path(source).exists()
                         else "a pyramid is built from a file or a .zarr folder")
    elif Path(source).stat().st_size == 0:
        raise TiledError("empty file")
    if source.lower().endswith(".npy"):
        try:
            array = np.load(io.BytesIO(data) if remote else source, mmap_mode=None if remote else "r",
                            allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise TiledError(f"not a readable .npy array ({error})") from None
        result.description, result.dtype, result.full_input_shape = f"array of {array.dtype}", str(array.dtype), \
            tuple(array.shape)
        if array.ndim == 4 and array.shape[0] == 1:
            array = array[0]
        if array.ndim not in (2, 3):
            raise TiledError(f"a pyramid is built from one (H, W) or (C, H, W) array, not shape {array.shape}")
        return strips.ArrayReader(array), strips.Rule(params), array.ndim == 3, None, None
    if not remote and is_tiff_path(source):
        info = tiled.open_tiff(source)
        if info is not None:
            return _tiff_pyramid_input(info, params, options, result, closers)
    picture = images.decode(data, auto_orient=options.auto_orient, max_pixels=options.max_pixels)
    if len(picture.frames) > 1:
        raise TiledError(f"a pyramid is built from one image; this file has {len(picture.frames)} frames")
    frame = picture.frames[0].to_array()
    result.description = f"{images.describe_mode(picture.mode)} image, {frame.dtype}"
    result.dtype = str(frame.dtype)
    rule = strips.Rule(params, pixels=True, has_alpha=picture.has_alpha, premultiply=options.premultiply,
                       linear=options.linear and params.op == "avg")
    channels = frame.shape[2]
    photometric = "rgb" if channels in (3, 4) and frame.dtype.kind == "u" else "minisblack"
    extrasamples = (2,) if picture.has_alpha else ()
    layout = tiled.TiffLayout(False, photometric, extrasamples, "zlib")
    return strips.ArrayReader(frame, channels_last=True), rule, True, layout, None


def _tiff_pyramid_input(info: tiled.TiffInput, params: PoolParams, options: Any, result: Result,
                        closers: list[Any]) -> tuple[Any, strips.Rule, bool, Any, Any]:
    _guard(info, options.memory_limit, options.max_pixels)
    result.description, result.dtype = info.describe(), str(info.dtype)
    rule = _pixel_rule(info, params, options.premultiply, options.linear)
    closers.append(info.close)
    return info.open(), rule, True, tiled.TiffLayout.like(info), None


def _absolute(location: str) -> str:
    """A location any worker can open: a local path made absolute (workers run elsewhere)."""
    return location if storage.is_url(location) else os.path.abspath(location)


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


def run_pyramid(source: str, output: str, params: PoolParams, options: Any, result: Result) -> None:
    """``poolcli pyramid``: level 0 (the input) and ``options.pyramid_levels`` levels, each pooled
    from the one above, strip by strip, into an OME-Zarr (NGFF 0.4) or a pyramidal OME-TIFF."""
    closers: list[Any] = []
    try:
        _run_pyramid(source, output, params, options, result, closers)
    finally:
        for close in closers:
            close()


def _run_pyramid(source: str, output: str, params: PoolParams, options: Any, result: Result,
                 closers: list[Any]) -> None:
    kind = _target(output, None, ("ZARR", "TIFF"), "a pyramid")
    if options.indices_path:
        raise TiledError("--return-indices is not available for pyramids")
    reader, rule, has_channel_axis, layout, z = _pyramid_input(source, params, options, result, closers)
    shapes = [tuple(reader.shape)]
    for level in range(1, options.pyramid_levels + 1):
        try:
            shapes.append(strips.output_shape(shapes[-1], params))
        except ValueError as error:
            raise TiledError(f"level {level} of {options.pyramid_levels} cannot be pooled ({error}); "
                             f"use --levels {level - 1} or a smaller kernel") from None
    result.input_shape, result.output_shape = shapes[0], shapes[-1]
    result.levels = [list(s) for s in shapes]
    axes = ("c", "y", "x") if has_channel_axis else ("y", "x")
    dtype = np.dtype(reader.dtype)
    limit = options.memory_limit

    def level_arrays(group: Any, zarr_format: int, first: int, compress: bool = True) -> list[Any]:
        arrays = []
        for n in range(first, len(shapes)):
            shape = shapes[n] if has_channel_axis else shapes[n][1:]
            chunks = tiled.output_chunks(axes, shape, ome=True)
            arrays.append(tiled.create_array(group, str(n), shape, dtype, chunks, zarr_format, compress=compress))
        return arrays

    def as_reader(array: Any) -> tiled.ChunkedReader:
        shape = tuple(array.shape) if has_channel_axis else (1, *array.shape)
        index = (lambda channels, rows: (channels, rows, slice(None))) if has_channel_axis \
            else (lambda channels, rows: (rows, slice(None)))
        return tiled.ChunkedReader(array, index, shape, channels_last=False,
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
            store(array, strips.iter_strips(previous, rule, limit, align=tiled.ZARR_CHUNK))
            previous = as_reader(array)

    base = _base_transform(z.ome if z is not None else None, z.axes if z is not None else axes)
    if z is not None:
        keep = [z.axes.index(a) for a in axes]
        base = ([base[0][i] for i in keep], [base[1][i] for i in keep])
    transforms = [base]
    for _ in range(options.pyramid_levels):
        transforms.append(_next_transform(axes, *transforms[-1], params))

    if kind == "ZARR":
        with tiled.zarr_output(output, options.storage_options) as out, storage.translated(output):
            group = _open_group(out.store(), 2)
            name = Path(source.rstrip("/")).name
            group.attrs.update(ome_attributes(NGFF_VERSION, name, axes, transforms, params,
                                              _input_axes(z, axes) if z is not None else None))
            arrays = level_arrays(group, 2, 0)
            store(arrays[0], _copy_strips(reader, limit, tiled.ZARR_CHUNK))
            pool_levels(arrays[1:], as_reader(arrays[0]))
        result.notes.append(f"written as an OME-Zarr image (NGFF {NGFF_VERSION}, Zarr v2), levels "
                            + " → ".join(str(tuple(s)) for s in shapes))
        return

    if layout is None:  # arrays into a TIFF: planes, as OME-TIFF's CYX
        channels = shapes[0][0]
        layout = tiled.TiffLayout(channels > 1, "minisblack", (), "zlib")
    with _scratch(output) as scratch:
        group = _open_group(scratch / "levels.zarr", 2)
        arrays = level_arrays(group, 2, 1, compress=False)  # scratch, read back once into the TIFF
        pool_levels(arrays, reader)
        channels = shapes[0][0]

        def passes(level_reader: Any) -> list[Iterator[tuple[int, int, np.ndarray]]]:
            return [_copy_strips(level_reader if picks is None else _pick(level_reader, picks), limit, tiled.TILE)
                    for picks in tiled.channel_passes(layout, channels)]

        levels = [(shapes[n], passes(as_reader(arrays[n - 1]))) for n in range(1, len(shapes))]
        _write_file(output, lambda path: tiled.write_tiff(
            path, shapes[0], dtype, layout, passes(reader), levels=levels,
            subifds=options.pyramid_levels, ome=True), options.storage_options)
    result.notes.append("written as a pyramidal tiled OME-TIFF (BigTIFF, SubIFDs), levels "
                        + " → ".join(str(tuple(s)) for s in shapes))
