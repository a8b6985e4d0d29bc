"""One input, start to finish: read, pool, write atomically, and say what happened.

Everything that can go wrong with one file ends here as a :class:`~poolcli.results.Result` with
status "error" and a one-line reason; nothing escapes as a traceback, and no partial output stays.

May import: NumPy, Pillow (through images) and the pooling layers; no Rich or Click.
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from poolcli import arrays, engine, formats, images, paths, pixels, storage, strips
from poolcli.brief import window_misfit
from poolcli.engine import PoolingError, PoolingTypeError
from poolcli.errors import GiantImageError, PoolcliError
from poolcli.exits import internal_error
from poolcli.formats import stream_byte_limit
from poolcli.frames import ArrayFrame
from poolcli.params import DEFAULT_MEMORY_LIMIT, PoolParams
from poolcli.results import GRID_LIMIT, Result
from poolcli.strips import LOCAL, Progress, StripRunner

STDIO = "-"
AUTO_LEVELS = -1  # ``poolcli pyramid`` without --levels: until a level fits in one tile


@dataclass(frozen=True)
class Options:
    """How to read and write, beyond the pooling parameters."""

    file_format: str | None = None  # "PNG", ..., or "NPY"; None: from the extension / input
    quality: int | None = None
    compression: int | None = None  # PNG deflate level / TIFF deflate; None: images.DEFAULT_COMPRESSION
    auto_orient: bool = True
    premultiply: bool = True
    linear: bool = False
    max_pixels: int | None = formats.DEFAULT_MAX_PIXELS
    max_frames: int | None = formats.DEFAULT_MAX_FRAMES
    indices_path: str | None = None
    memory_limit: int = DEFAULT_MEMORY_LIMIT  # working memory of one streamed image
    # > 0: ``poolcli pyramid`` (level 0 plus this many pooled levels); AUTO_LEVELS: until one fits a tile
    pyramid_levels: int = 0
    background: tuple[int, int, int] | None = None  # flatten alpha onto this RGB colour
    debug: bool = False  # an internal error also prints its traceback
    nodata: str | None = None  # --nodata: a number's text or "none"; None: a GeoTIFF's GDAL_NODATA, else no nodata
    ngff: str | None = None  # --ngff "0.4" or "0.5"; None: 0.5 where zarr writes v3 (an OME-Zarr input: its own)
    # --storage-options (JSON) for URLs; may hold secrets, so never shown in a repr
    storage_options: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Job:
    source: str  # a path, or "-" for stdin
    output: str  # a path, or "-" for stdout
    label: str | None = None  # how the input is named in reports (default: source)
    make_folders: bool = False  # the output is inside a folder output: create its subfolders

    @property
    def name(self) -> str:
        return self.label or self.source


def local_outputs(jobs: Iterable[Job], options: Options) -> list[str]:
    """The local files the jobs write (file:// URLs as their paths; object stores hold no temporary files)."""
    extra = [options.indices_path] if options.indices_path else []
    found = [path for path in [*(job.output for job in jobs), *extra] if path != STDIO]
    return [storage.local_path(path) if storage.is_url(path) else path for path in found
            if not storage.is_url(path) or storage.is_local_url(path)]


class JobError(PoolcliError):
    """A failure of one input, with the message to show."""


def atomic_write(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Write one file so that it appears whole or not at all (see :func:`poolcli.paths.write_all`)."""
    paths.write_all([(path, write)])


def output_format(output: str, options: Options, input_format: str | None, is_array: bool) -> str:
    """The format to write: --format, else the output's extension, else the input's own (for
    standard output, and for a device or FIFO whose name has no image extension)."""
    if options.file_format:
        return options.file_format
    if output != STDIO:
        extension = Path(output).suffix.lower()
        if extension == ".npy":
            return "NPY"
        found = formats.format_for_extension(extension)
        if found:
            return found
        if not paths.is_stream(output):
            raise JobError(f"unknown output extension {extension or '(none)'!r}; use --format or one of "
                           ".png .jpg .tif .webp .bmp .gif .npy")
    if is_array:
        return "NPY"
    if input_format in formats.FORMATS:
        return input_format
    return "PNG"


# Streams are read in pieces of this size; the header is looked at after each piece while the
# data is small, then at each doubling of it (so looking stays linear in the stream's size).
_CHUNK = 1 << 16
# A stream whose first this-many bytes hold no header Pillow or NumPy can read is refused: an
# endless /dev/zero must not fill the memory up to the pixel-derived cap.
_HEADER_BYTES = 64 << 20
def _read_stream(handle: BinaryIO, what: str, max_pixels: int | None) -> bytes:
    """Read a pipe to its end, refusing early: an image whose header claims more than
    ``max_pixels`` pixels, an array larger than the byte limit, more bytes than that limit, or
    (with a limit) 64 MiB without a header that could be read."""
    limit = stream_byte_limit(max_pixels)
    data = bytearray()
    header_checked, next_look = False, 0
    # read1: whatever has arrived (up to a piece), so that a header is checked before more is sent.
    read = getattr(handle, "read1", handle.read)
    while True:
        chunk = read(_CHUNK)
        if not chunk:
            break
        data += chunk
        if limit is not None and len(data) > limit:
            raise JobError(f"{what} holds more than {limit} bytes, the most --max-pixels {max_pixels} allows "
                           "(16 bytes a pixel); raise --max-pixels (0 removes the limit) if you trust it")
        if not header_checked and len(data) >= next_look:
            header_checked = _check_stream_header(bytes(data), max_pixels, limit)
            next_look = len(data) if len(data) < _CHUNK else 2 * len(data)
            if not header_checked and limit is not None and len(data) > _HEADER_BYTES:
                started = images.sniffed(bytes(data[:16]))
                if started:  # a known signature, then nothing readable: not "no header"
                    raise JobError(f"damaged {started} file: {what} starts with a {started} signature, but Pillow "
                                   f"cannot read what follows in its first {_HEADER_BYTES} bytes")
                raise JobError(f"{what} has no image or .npy header in its first {_HEADER_BYTES} bytes")
    if not data:
        raise JobError(f"{what} is empty")
    return bytes(data)


def _check_stream_header(data: bytes, max_pixels: int | None, limit: int | None) -> bool:
    """Check the size a stream's header claims; True once it could be read."""
    if data.startswith(arrays.NPY_MAGIC):
        try:
            shape, dtype = arrays.header_of(data)
        except arrays.ArrayError:
            return False  # incomplete: look again after more has arrived
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if limit is not None and nbytes > limit:
            raise JobError(f"the array's header claims {nbytes} bytes, more than the {limit} that --max-pixels "
                           f"{max_pixels} allows from a stream; raise --max-pixels (0 removes it)")
        return True
    if not max_pixels:
        return True
    size = images.claimed_size(data)
    if size is None:
        return False
    images.check_pixel_limit(size, max_pixels)
    return True


def _read_source(source: str, max_pixels: int | None, storage_options: str | None = None) -> bytes | str:
    """A regular file's path, or the bytes of standard input, a FIFO, a device (read to the end)
    or a URL's object."""
    if source == STDIO:
        return _read_stream(sys.stdin.buffer, "standard input", max_pixels)
    if storage.is_url(source):
        if not storage.is_local_url(source):
            return _read_url(source, storage_options, stream_byte_limit(max_pixels))
        source = storage.local_path(source)
    try:
        mode = os.stat(source).st_mode
    except FileNotFoundError:
        raise JobError("no such file") from None
    if stat.S_ISDIR(mode):
        raise JobError("is a folder, not a file")
    if not stat.S_ISREG(mode):  # a FIFO, /dev/stdin, <(process substitution), a device
        with open(source, "rb") as handle:
            return _read_stream(handle, "the stream", max_pixels)
    if os.stat(source).st_size == 0:
        raise JobError("empty file")
    return source


def _read_url(url: str, storage_options: str | None, limit: int | None) -> bytes:
    try:
        return storage.read_bytes(url, storage_options, limit)
    except FileNotFoundError:
        raise JobError("no such file") from None
    except IsADirectoryError:
        raise JobError("is a folder, not a file") from None
    except EOFError:
        raise JobError("empty file") from None
    except PermissionError:
        raise JobError("permission denied") from None


def _chw(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(C, H, W) of an array shape: a 2-D array is one channel; a batch is not counted."""
    return (1, *shape) if len(shape) == 2 else tuple(shape[-3:])


def _save_npy(array: np.ndarray) -> Callable[[BinaryIO], None]:
    return lambda handle: np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


# User faults: what a bad file, a bad option combination or the system can cause.
_USER_ERRORS: tuple[type[BaseException], ...] = (
    JobError, images.ImageError, arrays.ArrayError, paths.OutputError, PoolingError, PoolingTypeError,
    storage.StorageError, GiantImageError)


def debug_wanted(options: Options) -> bool:
    """--debug, or POOLCLI_DEBUG=1 in the environment."""
    return options.debug or os.environ.get("POOLCLI_DEBUG", "") not in ("", "0")


def run(job: Job, params: PoolParams, options: Options, runner: StripRunner | None = None,
        progress: Progress | None = None) -> Result:
    """Pool one input and write its outputs; never raises for a bad file.

    ``runner`` runs the strips of a giant image written to Zarr (default: here, in order; the
    executor's, for a cluster): the job itself never starts or reaches a cluster.  ``progress``
    hears how far a giant image or a pyramid is (:data:`poolcli.strips.Progress`).

    The user's faults (a bad file, a torch rule, an unwritable output, the system) become a
    one-line reason; anything else is a bug, reported as an internal error (with a traceback
    on standard error under ``--debug`` or ``POOLCLI_DEBUG=1``).
    """
    started = time.perf_counter()
    result = Result(input=job.name, output=storage.redact(job.output))
    try:
        _check_folders(job, options)
        next(route for route in ROUTES if route.takes(job, options) and route.run(job, params, options, result,
                                                                                   runner or LOCAL, progress))
    except _USER_ERRORS as error:
        text = error.reason if isinstance(error, storage.StorageFault) and error.url == job.source else str(error)
        result.status, result.error, result.output = "error", _reason(text, error), None
    except MemoryError:
        result.status, result.error, result.output = "error", "not enough memory for this image", None
    except OSError as error:  # reading the input: the path as given, never a temporary name
        reason = _reason(error.strerror or str(error), error)
        result.status, result.error, result.output = "error", reason, None
    except Exception as error:  # a bug: one bad file must never end the run with a traceback
        if debug_wanted(options):
            import traceback

            traceback.print_exc(file=sys.stderr)
        result.status, result.output = "error", None
        result.error = storage.redact(internal_error(error))
    staged = paths.take_staged()  # a folder run's outputs, written whole, waiting for their group commit
    if result.status == "ok":
        result.staged = staged
    else:
        for group in staged:
            paths.discard(group)
    result.seconds = time.perf_counter() - started
    return result


def _reason(text: str, error: BaseException) -> str:
    """The one-line reason for the user: never empty (an exception without a message said nothing).

    >>> _reason("", OSError())
    'failed without a message from the system (OSError)'
    """
    text = storage.redact(" ".join(text.split()))
    return text or f"failed without a message from the system ({type(error).__name__})"


def _is_remote(location: str) -> bool:
    return storage.is_url(location) and not storage.is_local_url(location)


def _pool_pyramid(job: Job, params: PoolParams, options: Options, result: Result, runner: StripRunner,
                  progress: Progress | None) -> bool:
    from poolcli import pyramid

    pyramid.run_pyramid(job.source, job.output, params, options, result, progress)
    return True


def _pool_zarr(job: Job, params: PoolParams, options: Options, result: Result, runner: StripRunner,
               progress: Progress | None) -> bool:
    from poolcli import giant

    giant.run_zarr(job.source, job.output, params, options, result, runner, progress)
    return True


def _pool_streamed_tiff(job: Job, params: PoolParams, options: Options, result: Result, runner: StripRunner,
                        progress: Progress | None, source: str | None = None) -> bool:
    """A TIFF that streams (tiled, BigTIFF, OME, planar, larger than the limits), local or read by
    byte ranges; False for one that Pillow's path reads better (its metadata handling)."""
    from poolcli import giant  # giant-image machinery: tifffile, zarr, strips

    info = giant.open_if_streaming(source or job.source, options.memory_limit, options.max_pixels,
                                   options.storage_options, output=job.output)
    if info is None:
        return False
    giant.run_tiff(info, job.output, params, options, result, runner, progress)
    return True


def _pool_file(job: Job, params: PoolParams, options: Options, result: Result, runner: StripRunner,
               progress: Progress | None) -> bool:
    """A file, a stream or a URL's whole object, by what its bytes are: an array, a streamed
    TIFF, else an image for Pillow (and imagecodecs)."""
    source = _read_source(job.source, options.max_pixels, options.storage_options)
    if arrays.is_npy(source) or (isinstance(source, bytes) and _is_remote(job.source)
                                 and job.source.lower().endswith(".npy")):
        _run_array(source, job, params, options, result)
    elif not (isinstance(source, str) and formats.is_tiff_path(source)
              and _pool_streamed_tiff(job, params, options, result, runner, progress, source)):
        _run_image(source, job, params, options, result)
    return True


@dataclass(frozen=True)
class Route:
    """One way in: which inputs it takes (by the store and the name, before anything is read) and
    how it pools them; ``run`` returns False to hand the input on to the next route."""

    name: str
    takes: Callable[[Job, Options], bool]
    run: Callable[[Job, PoolParams, Options, Result, StripRunner, Progress | None], bool]


# The one dispatch of inputs, first match first: every format on every store comes through here.
ROUTES: tuple[Route, ...] = (
    Route("pyramid", lambda job, options: bool(options.pyramid_levels), _pool_pyramid),
    Route("Zarr store", lambda job, options: job.source != STDIO and (
        formats.is_zarr_path(job.source) or storage.is_zarr_url(job.source)), _pool_zarr),
    Route("remote TIFF", lambda job, options: _is_remote(job.source) and formats.is_tiff_name(job.source),
          _pool_streamed_tiff),
    Route("file, stream or object", lambda job, options: True, _pool_file),
)


def _check_folders(job: Job, options: Options) -> None:
    """A file output whose folder does not exist is refused before the work (nothing is created)."""
    wanted = [] if job.make_folders else [job.output]
    for path in [*wanted, *([options.indices_path] if options.indices_path else [])]:
        if storage.is_url(path) and not storage.is_local_url(path):
            continue  # object stores have no folders
        folder = paths.missing_folder(storage.local_path(path) if storage.is_url(path) else path)
        if folder is not None:
            raise JobError(f"cannot write {path}: the folder {folder} does not exist")


def _run_array(source: bytes | str, job: Job, params: PoolParams, options: Options, result: Result) -> None:
    array = arrays.load_npy(source)
    result.description, result.dtype = f"array of {array.dtype}", str(array.dtype)
    result.full_input_shape = tuple(array.shape)
    result.input_shape = _chw(array.shape)
    _check_fit(params, result.input_shape, is_image=False)
    # Arrays are always written as .npy: in a folder run --format applies to the images only.
    in_folder_run = job.output != STDIO and job.output.lower().endswith(".npy")
    file_format = "NPY" if in_folder_run else output_format(job.output, options, None, is_array=True)
    if file_format != "NPY":
        raise JobError(f"an array input is written as .npy, not {file_format}")
    if options.linear:
        raise JobError("--linear applies to images, not to arrays")
    value = _nodata(options, array.dtype)
    if value is not None:  # arrays stay torch-exact unless --nodata is given
        planes = strips.Rule(params, nodata=value).pool(array.reshape(-1, *array.shape[-2:]))
        values, indices = planes.reshape(*array.shape[:-2], *planes.shape[-2:]), None
    else:
        values, indices = pixels.pool_array(array, params, want_indices=options.indices_path is not None)
    result.full_output_shape = tuple(values.shape)
    result.output_shape = _chw(values.shape)
    if array.shape[-1] <= GRID_LIMIT and array.shape[-2] <= GRID_LIMIT:
        result.input_values, result.output_values = array, values
    outputs = [(job.output, _save_npy(values))]
    if indices is not None and options.indices_path:
        outputs.append((options.indices_path, _save_npy(indices)))
    _write_all(outputs, job, options)


def _write_all(outputs: list[tuple[str, Callable[[BinaryIO], None]]], job: Job, options: Options) -> None:
    """Local outputs together or not at all (:func:`poolcli.paths.write_all`); each URL output
    whole or not at all (:func:`poolcli.storage.write`), after the local ones."""
    local = [(storage.local_path(path) if storage.is_url(path) else path, write) for path, write in outputs
             if not storage.is_url(path) or storage.is_local_url(path)]
    if local:
        paths.write_all(local, make_folders=job.make_folders or any(storage.is_url(path) for path, _ in outputs))
    for path, write in outputs:
        if storage.is_url(path) and not storage.is_local_url(path):
            storage.write(path, write, options.storage_options)


def _run_image(source: bytes | str, job: Job, params: PoolParams, options: Options, result: Result) -> None:
    picture = images.decode(source, auto_orient=options.auto_orient, max_pixels=options.max_pixels,
                            max_frames=options.max_frames, lazy=True)
    try:
        with _engine_threads(picture):
            _pool_picture(picture, job, params, options, result)
    finally:
        picture.close()


# Images of at most this many decoded bytes are pooled on one engine thread: handing their few
# blocks to the engine's threads and waiting for them cost more than they save (a 1024x768 photo:
# 1.0 ms of pooling on one thread, 1.3-1.5 ms of CPU on two; measured), and a folder run has
# its own parallelism (-j).
SMALL_IMAGE_BYTES = 8 << 20


@contextlib.contextmanager
def _engine_threads(picture: images.Picture) -> Iterator[None]:
    """One engine thread while a small picture is pooled (:data:`SMALL_IMAGE_BYTES`)."""
    frame = picture.frames[0]
    if math.prod(frame.shape) * frame.dtype.itemsize * len(picture.frames) > SMALL_IMAGE_BYTES:
        yield
        return
    with engine.limited_threads(1):
        yield


def _pool_picture(picture: images.Picture, job: Job, params: PoolParams, options: Options, result: Result) -> None:
    height, width, channels = picture.frames[0].shape
    converted = f" (from mode {picture.source_mode})" if picture.source_mode != picture.mode else ""
    result.description = f"{formats.describe_mode(picture.mode)} image{converted}, {picture.frames[0].dtype}"
    result.dtype = str(picture.frames[0].dtype)
    result.frames = len(picture.frames)
    result.input_shape = (channels, height, width)
    result.mode = picture.mode
    _check_fit(params, result.input_shape, is_image=True)
    if picture.source_mode != picture.mode:
        result.notes.append(f"mode {picture.source_mode} pooled as {picture.mode}")
    if picture.orientation:
        result.notes.append(f"EXIF orientation {picture.orientation} applied (--no-auto-orient keeps the stored one)")
    file_format = output_format(job.output, options, picture.format, is_array=False)
    if options.background is not None and picture.has_alpha:
        picture = _flattened(picture, options.background)
        channels -= 1
        result.notes.append(f"alpha flattened onto the background {_colour_text(options.background)}")
    if file_format != "NPY":
        images.check_format(images.storage_mode(picture.mode, file_format, picture.frames), file_format)
        lost = picture.lost_metadata(file_format)
        if lost:
            result.notes.append(f"{file_format} cannot hold the {' and '.join(lost)} of the input: not written")
    if options.quality is not None and file_format not in formats.DEFAULT_QUALITY:
        result.notes.append(f"--quality has no effect on {file_format}")
    if options.compression is not None and file_format not in ("PNG", "TIFF"):
        result.notes.append(f"--compression has no effect on {file_format}")

    if file_format == "PNG" and len(picture.frames) == 1 and not options.indices_path and options.nodata is None \
            and (picture.mode, file_format) not in formats.NARROWED_MODES:
        # Pooled band by band as the PNG writer reads it, while the input may still be decoding.
        pooled_picture, index_frames = pool_picture_lazily(picture, params, options), list[np.ndarray]()
        pooled_frames = []
        out_h, out_w = pooled_picture.frames[0].shape[:2]
    else:
        pooled_picture, index_frames = pool_picture(picture, params, options,
                                                    want_indices=options.indices_path is not None)
        pooled_frames = [frame.to_array() for frame in pooled_picture.frames]
        out_h, out_w = pooled_frames[0].shape[:2]
    result.output_shape = (channels, out_h, out_w)

    outputs: list[tuple[str, Callable[[BinaryIO], None]]] = []
    if file_format == "NPY":
        planes = np.stack([f.transpose(2, 0, 1) for f in pooled_frames]) if len(pooled_frames) > 1 \
            else pooled_frames[0].transpose(2, 0, 1)
        result.output_description = f"array of {planes.dtype}"
        outputs.append((job.output, _save_npy(planes)))
    else:
        stride = params.effective_stride
        written = images.storage_mode(pooled_picture.mode, file_format, pooled_picture.frames)
        result.output_description = f"{formats.describe_mode(written)} {file_format}"
        if written != pooled_picture.mode:
            result.notes.append(f"written as {result.output_description}")

        def write_image(handle: BinaryIO) -> None:
            images.encode(pooled_picture, handle, file_format, quality=options.quality,
                          compression=options.compression, dpi_scale=(stride[1], stride[0]))
            picture.verify()  # the input's image data read whole and checked, or no output

        outputs.append((job.output, write_image))
    if options.indices_path:
        stacked = np.stack(index_frames) if len(index_frames) > 1 else index_frames[0]
        outputs.append((options.indices_path, _save_npy(stacked)))
    _write_all(outputs, job, options)


def pool_picture(picture: images.Picture, params: PoolParams, options: Options,
                 want_indices: bool = False) -> tuple[images.Picture, list[np.ndarray]]:
    """Pool every frame of a decoded picture (the CLI and :func:`poolcli.pool_image` both come
    here); returns the pooled picture, metadata kept, and the indices of each frame (max with
    ``want_indices``).  The input's pixels are freed once pooled (``picture.close()``).
    """
    _check_fit(params, (picture.frames[0].shape[2], *picture.frames[0].shape[:2]), is_image=True)
    if options.linear and params.spec.averages:
        _check_linear(picture)
    pooled_frames: list[np.ndarray | images.PaddedFrame] = []
    index_frames: list[np.ndarray] = []
    value = _nodata(options, picture.frames[0].dtype)
    if value is not None and options.linear and params.spec.averages:
        raise JobError("--linear and a nodata value do not go together; give --nodata none")
    for frame in picture.frames:
        padded = frame.padded if isinstance(frame, images.PaddedFrame) else None  # RGBX: pooled as 4 channels
        pooled, indices = pixels.pool_pixels(
            frame if padded is None else ArrayFrame(padded), params, has_alpha=picture.has_alpha,
            premultiply=options.premultiply, linear=options.linear, want_indices=want_indices,
            nodata_value=value)
        pooled_frames.append(pooled if padded is None else images.PaddedFrame(np.ascontiguousarray(pooled)))
        if indices is not None:  # max with --return-indices
            index_frames.append(indices if padded is None else indices[:3])
    picture.verify()  # rows the windows never read, and the end of a streamed file's data
    picture.close()  # the input pixels are no longer needed: free them before encoding
    return picture.with_frames(pooled_frames), index_frames


def pool_picture_lazily(picture: images.Picture, params: PoolParams, options: Options) -> images.Picture:
    """``picture`` (one frame) with a frame that pools its rows as they are read
    (:class:`poolcli.pixels.PooledFrame`); the input stays open until the caller closes it."""
    frame = picture.frames[0]
    height, width, channels = frame.shape
    _check_fit(params, (channels, height, width), is_image=True)
    if options.linear and params.spec.averages:
        _check_linear(picture)
    _, out_h, out_w = strips.output_shape((channels, height, width), params)
    pooled = pixels.PooledFrame(frame, params, (out_h, out_w, channels), has_alpha=picture.has_alpha,
                                premultiply=options.premultiply, linear=options.linear)
    if isinstance(frame, images.StreamedFrame):
        return replace(picture, frames=[_ReleasingFrame(pooled, frame, params)])
    return replace(picture, frames=[pooled])


def _nodata(options: Options, dtype: np.dtype) -> int | float | None:
    """``--nodata``'s value for data of ``dtype`` (None: not given, or ``none``); a value the
    dtype cannot hold is the job's one-line reason, before any pooling."""
    from poolcli import nodata

    try:
        return nodata.checked(options.nodata, dtype)
    except nodata.NodataError as error:
        raise JobError(str(error)) from None


class _ReleasingFrame:
    """A pooled frame read in order (the PNG writer's bands): once output rows up to ``bottom``
    are pooled, the input rows above the first that any later window reads are released
    (:meth:`poolcli.images.StreamedFrame.release`), so that a streamed PNG's memory stays a
    band however tall the image is."""

    def __init__(self, pooled: pixels.PooledFrame, source: images.StreamedFrame, params: PoolParams):
        self.pooled, self.source = pooled, source
        self.shape, self.dtype = pooled.shape, pooled.dtype
        self._stride, self._padding = params.effective_stride[0], params.padding[0]

    def rows(self, top: int, bottom: int) -> np.ndarray:
        out = self.pooled.rows(top, bottom)  # computed into new memory: nothing of the input is kept
        self.source.release(max(0, bottom * self._stride - self._padding))  # output row o starts at o*s - p
        return out

    def to_array(self) -> np.ndarray:
        return np.ascontiguousarray(self.rows(0, self.shape[0]))

    def planes(self) -> np.ndarray:
        return self.to_array().transpose(2, 0, 1)

    def value_range(self) -> tuple[float, float]:
        return self.pooled.value_range()

    def close(self) -> None:
        self.pooled.close()


def _check_fit(params: PoolParams, shape: tuple[int, ...], is_image: bool) -> None:
    """A window larger than the padded input explains itself before any pixel is pooled."""
    misfit = window_misfit(params, shape, is_image)
    if misfit:
        raise JobError(misfit)


def _flattened(picture: images.Picture, background: tuple[int, int, int]) -> images.Picture:
    """``picture`` with its alpha composited onto ``background`` (--background)."""
    frames = [frame.to_array() for frame in picture.frames]
    picture.close()
    scale = np.iinfo(frames[0].dtype).max // 255  # 1 for 8-bit, 257 for 16-bit
    red, green, blue = background
    gray = (red * 19595 + green * 38470 + blue * 7471 + 0x8000) >> 16  # ITU-R 601-2 luma, as Pillow's convert("L")
    colour = (gray,) if frames[0].shape[2] == 2 else background
    flat = [pixels.flatten(frame, tuple(v * scale for v in colour)) for frame in frames]
    return picture.with_frames(flat, mode=formats.FLATTENED[picture.mode])


def _colour_text(colour: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


def _check_linear(picture: images.Picture) -> None:
    """--linear decodes sRGB: refuse pixels that are not sRGB-encoded, by mode or by ICC profile."""
    if picture.mode not in images.SRGB_MODES:
        can = ", ".join(mode for mode in formats.MODES if formats.MODES[mode].srgb)
        raise JobError(f"--linear needs sRGB pixels ({can}), not {formats.describe_mode(picture.mode)}")
    if picture.icc_profile:
        name = images.profile_description(picture.icc_profile)
        if "srgb" not in name.lower():
            raise JobError(f"--linear averages sRGB values, but the image's ICC profile is {name!r}; convert it to "
                           "sRGB first, or average without --linear")
