"""One input, start to finish: read, pool, write atomically, and say what happened.

Everything that can go wrong with one file ends here as a :class:`~poolcli.results.Result` with
status "error" and a one-line reason; nothing escapes as a traceback, and no partial output stays.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np

from poolcli import formats, images, pixels, storage
from poolcli.params import PoolParams
from poolcli.results import GRID_LIMIT, Result

STDIO = "-"
NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class Options:
    """How to read and write, beyond the pooling parameters."""

    file_format: str | None = None  # "PNG", ..., or "NPY"; None: from the extension / input
    quality: int | None = None
    auto_orient: bool = True
    premultiply: bool = True
    linear: bool = False
    max_pixels: int | None = formats.DEFAULT_MAX_PIXELS
    max_frames: int | None = formats.DEFAULT_MAX_FRAMES
    indices_path: str | None = None
    background: tuple[int, int, int] | None = None  # flatten alpha onto this RGB colour
    # --storage-options (JSON) for URLs; may hold secrets, so never shown in a repr
    storage_options: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Job:
    source: str  # a path, or "-" for stdin
    output: str  # a path, or "-" for stdout
    label: str | None = None  # how the input is named in reports (default: source)

    @property
    def name(self) -> str:
        return self.label or self.source


class JobError(Exception):
    """A failure of one input, with the message to show."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Write a file so that it appears whole or not at all: a temporary file in the same folder,
    then a rename.  On any failure (or Ctrl-C) the temporary file is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Not a with-block: the file must outlive its handle until the rename.
    handle = cast(BinaryIO, tempfile.NamedTemporaryFile(  # noqa: SIM115
        dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False
    ))
    try:
        with handle:
            write(handle)
        os.chmod(handle.name, _FILE_MODE)
        os.replace(handle.name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise


def output_format(output: str, options: Options, input_format: str | None, is_array: bool) -> str:
    """The format to write: --format, else the output's extension, else the input's own."""
    if options.file_format:
        return options.file_format
    if output != STDIO:
        extension = Path(output).suffix.lower()
        if extension == ".npy":
            return "NPY"
        found = formats.format_for_extension(extension)
        if found:
            return found
        raise JobError(f"unknown output extension {extension or '(none)'!r}; use --format or one of "
                       ".png .jpg .tif .webp .bmp .gif .npy")
    if is_array:
        return "NPY"
    if input_format in formats.FORMATS:
        return input_format
    return "PNG"


def _read_source(source: str, options: Options) -> bytes | str:
    if source == STDIO:
        data = sys.stdin.buffer.read()
        if not data:
            raise JobError("standard input is empty")
        return data
    if storage.is_url(source):
        if not storage.is_local_url(source):
            return _read_url(source, options)
        source = storage.local_path(source)
    path = Path(source)
    if not path.exists():
        raise JobError("no such file")
    if path.is_dir():
        raise JobError("is a folder, not a file")
    if path.stat().st_size == 0:
        raise JobError("empty file")
    return source


def _read_url(url: str, options: Options) -> bytes:
    try:
        return storage.read_bytes(url, options.storage_options)
    except FileNotFoundError:
        raise JobError("no such file") from None
    except IsADirectoryError:
        raise JobError("is a folder, not a file") from None
    except EOFError:
        raise JobError("empty file") from None
    except PermissionError:
        raise JobError("permission denied") from None
    except storage.StorageError as error:
        raise JobError(str(error)) from None


def _is_npy(source: bytes | str) -> bool:
    if isinstance(source, bytes):
        return source.startswith(NPY_MAGIC)
    if source.lower().endswith(".npy"):
        return True
    with open(source, "rb") as handle:
        return handle.read(len(NPY_MAGIC)) == NPY_MAGIC


def _load_npy(source: bytes | str) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(source) if isinstance(source, bytes) else source, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise JobError(f"not a readable .npy array ({error})") from None
    if not isinstance(array, np.ndarray) or array.ndim not in (2, 3, 4):
        shape = getattr(array, "shape", None)
        raise JobError(f"a .npy input must have shape (H, W), (C, H, W) or (N, C, H, W), not {shape}")
    return array


def _chw(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(C, H, W) of an array shape: a 2-D array is one channel; a batch is not counted."""
    return (1, *shape) if len(shape) == 2 else tuple(shape[-3:])


def _write_output(output: str, write: Callable[[BinaryIO], None], options: Options | None = None) -> None:
    if output == STDIO:
        buffer = io.BytesIO()
        write(buffer)
        sys.stdout.buffer.write(buffer.getvalue())
        sys.stdout.buffer.flush()
    else:
        _write_file(output, write, options)


def _write_file(path: str, write: Callable[[BinaryIO], None], options: Options | None) -> None:
    """A whole file or object, or nothing: a local path or any fsspec URL."""
    if storage.is_url(path):
        storage.write(path, write, options.storage_options if options else None)
    else:
        atomic_write(path, write)


def _save_npy(array: np.ndarray) -> Callable[[BinaryIO], None]:
    return lambda handle: np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


def run(job: Job, params: PoolParams, options: Options) -> Result:
    """Pool one input and write its output; never raises for a bad file."""
    started = time.perf_counter()
    result = Result(input=job.name, output=storage.redact(job.output))
    try:
        source = _read_source(job.source, options)
        if _is_npy(source) or (isinstance(source, bytes) and job.source.lower().endswith(".npy")):
            _run_array(source, job, params, options, result)
        else:
            _run_image(source, job, params, options, result)
    except (JobError, images.ImageError, storage.StorageError) as error:
        result.status, result.error, result.output = "error", storage.redact(str(error)), None
    except ValueError as error:  # the engine's torch messages (e.g. output size too small)
        result.status, result.error, result.output = "error", str(error), None
    except MemoryError:
        result.status, result.error, result.output = "error", "not enough memory for this image", None
    except OSError as error:
        reason = error.strerror or str(error)
        where = f" ({storage.redact(str(error.filename))})" if getattr(error, "filename", None) else ""
        result.status, result.error, result.output = "error", f"{reason}{where}", None
    except Exception as error:  # one bad file must never end the run with a traceback
        result.status, result.output = "error", None
        result.error = storage.redact(f"unexpected {type(error).__name__}: {error}")
    result.seconds = time.perf_counter() - started
    return result


def _run_array(source: bytes | str, job: Job, params: PoolParams, options: Options, result: Result) -> None:
    array = _load_npy(source)
    result.description, result.dtype = f"array of {array.dtype}", str(array.dtype)
    result.full_input_shape = tuple(array.shape)
    result.input_shape = _chw(array.shape)
    # Arrays are always written as .npy: in a folder run --format applies to the images only.
    in_folder_run = job.output != STDIO and job.output.lower().endswith(".npy")
    file_format = "NPY" if in_folder_run else output_format(job.output, options, None, is_array=True)
    if file_format != "NPY":
        raise JobError(f"an array input is written as .npy, not {file_format}")
    if options.linear:
        raise JobError("--linear applies to images, not to arrays")
    values, indices = pixels.pool_array(array, params, want_indices=options.indices_path is not None)
    result.full_output_shape = tuple(values.shape)
    result.output_shape = _chw(values.shape)
    if array.shape[-1] <= GRID_LIMIT and array.shape[-2] <= GRID_LIMIT:
        result.input_values, result.output_values = array, values
    _write_output(job.output, _save_npy(values), options)
    if indices is not None and options.indices_path:
        _write_file(options.indices_path, _save_npy(indices), options)


def _run_image(source: bytes | str, job: Job, params: PoolParams, options: Options, result: Result) -> None:
    picture = images.decode(source, auto_orient=options.auto_orient, max_pixels=options.max_pixels,
                            max_frames=options.max_frames, lazy=True)
    try:
        _pool_picture(picture, job, params, options, result)
    finally:
        picture.close()


def _pool_picture(picture: images.Picture, job: Job, params: PoolParams, options: Options, result: Result) -> None:
    height, width, channels = picture.frames[0].shape
    converted = f" (from mode {picture.source_mode})" if picture.source_mode != picture.mode else ""
    result.description = f"{formats.describe_mode(picture.mode)} image{converted}, {picture.frames[0].dtype}"
    result.dtype = str(picture.frames[0].dtype)
    result.frames = len(picture.frames)
    result.input_shape = (channels, height, width)
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
    if options.linear and params.op == "avg":
        _check_linear(picture)
    if options.quality is not None and file_format not in formats.DEFAULT_QUALITY:
        result.notes.append(f"--quality has no effect on {file_format}")

    pooled_frames: list[np.ndarray] = []
    index_frames: list[np.ndarray] = []
    for frame in picture.frames:
        pooled, indices = pixels.pool_pixels(
            frame, params, has_alpha=picture.has_alpha, premultiply=options.premultiply,
            linear=options.linear, want_indices=options.indices_path is not None)
        pooled_frames.append(pooled)
        if indices is not None:  # max with --return-indices
            index_frames.append(indices)
    picture.close()  # the input pixels are no longer needed: free them before encoding
    out_h, out_w = pooled_frames[0].shape[:2]
    result.output_shape = (channels, out_h, out_w)
    pooled_picture = picture.with_frames(pooled_frames)

    if file_format == "NPY":
        planes = np.stack([f.transpose(2, 0, 1) for f in pooled_frames]) if len(pooled_frames) > 1 \
            else pooled_frames[0].transpose(2, 0, 1)
        result.output_description = f"array of {planes.dtype}"
        _write_output(job.output, _save_npy(planes), options)
    else:
        stride = params.effective_stride
        written = images.storage_mode(pooled_picture.mode, file_format, pooled_picture.frames)
        result.output_description = f"{formats.describe_mode(written)} {file_format}"
        _write_output(job.output, lambda handle: images.encode(
            pooled_picture, handle, file_format, quality=options.quality, dpi_scale=(stride[1], stride[0])), options)
    if options.indices_path:
        stacked = np.stack(index_frames) if len(index_frames) > 1 else index_frames[0]
        _write_file(options.indices_path, _save_npy(stacked), options)


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
