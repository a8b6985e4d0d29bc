"""Image files in and out (the only module that uses Pillow).

Decoding gives a :class:`Picture`: its frames as NumPy arrays of shape (H, W, C), in one of the
modes poolcli pools (L, LA, RGB, RGBA, CMYK, I;16, I, F), with the metadata worth keeping.
Encoding writes pooled frames back with that metadata, into any format that can hold the mode.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import BinaryIO, cast

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

# Modes that pool as they are, and the array dtype of each.
MODE_DTYPES = {
    "L": np.uint8,
    "LA": np.uint8,
    "RGB": np.uint8,
    "RGBA": np.uint8,
    "CMYK": np.uint8,
    "I;16": np.uint16,
    "I": np.int32,
    "F": np.float32,
}
ALPHA_MODES = {"LA", "RGBA"}
# Colour (sRGB-encoded) modes, for --linear.
SRGB_MODES = {"L", "LA", "RGB", "RGBA", "I;16"}

# Which modes each output format stores faithfully (checked, not left to Pillow, which would
# silently turn float pixels into RGB for WebP or drop alpha for BMP).
FORMAT_MODES = {
    "PNG": {"L", "LA", "RGB", "RGBA", "I;16"},
    "JPEG": {"L", "RGB", "CMYK"},
    "TIFF": {"L", "LA", "RGB", "RGBA", "CMYK", "I;16", "I", "F"},
    "WEBP": {"L", "LA", "RGB", "RGBA"},
    "BMP": {"L", "RGB"},
    "GIF": {"L", "RGB", "RGBA"},
}
# File extensions poolcli reads and writes, and the format each means.
EXTENSION_FORMATS = {
    ".png": "PNG",
    ".apng": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".gif": "GIF",
}
FORMAT_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif"}
# Image files a folder walk picks up: what Pillow commonly reads, beyond what poolcli writes.
READ_EXTENSIONS = set(EXTENSION_FORMATS) | {".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".jp2", ".pcx", ".qoi"}
DEFAULT_QUALITY = {"JPEG": 92, "WEBP": 90}
# Pillow's decompression-bomb limit (about 89.5 megapixels); --max-pixels changes it.
DEFAULT_MAX_PIXELS = 89_478_485
# Pixels are copied out of Pillow in strips of about this many bytes: Image.tobytes() of the
# whole image would briefly hold two more copies of it.
_STRIP_BYTES = 8 << 20


class LazyFrame:
    """A frame whose pixels stay inside Pillow until asked for, in strips of rows.

    Pooling reads it strip by strip (``rows``), so a large image is never held twice: once as
    Pillow's decoded image and once as an array.  ``close()`` frees Pillow's copy.
    """

    def __init__(self, image: Image.Image, mode: str):
        width, height = image.size
        self.image = image
        self.mode = mode
        self.dtype = np.dtype(MODE_DTYPES[mode])
        self.shape = (height, width, len(image.getbands()))
        self._lock = threading.Lock()  # Pillow images are not documented as thread-safe

    def rows(self, top: int, bottom: int) -> np.ndarray:
        """Rows ``top:bottom`` as an (rows, W, C) array."""
        with self._lock:
            strip = _strip(self.image, top, bottom)
        return strip if strip.dtype == self.dtype else strip.astype(self.dtype)

    def to_array(self) -> np.ndarray:
        return _pixels(self.image, self.mode)

    def value_range(self) -> tuple[float, float]:
        """(min, max) over all channels, from Pillow, without copying the pixels out."""
        extrema = self.image.getextrema()
        pairs = extrema if isinstance(extrema[0], tuple) else (extrema,)
        return min(p[0] for p in pairs), max(p[1] for p in pairs)

    def close(self) -> None:
        self.image.close()


Frame = np.ndarray | LazyFrame


class ImageError(Exception):
    """A file that cannot be read or written as an image; the message names the cause."""


@dataclass
class Picture:
    """Decoded pixels and the metadata that survives pooling."""

    frames: list[Frame]  # each (H, W, C): an array, or a LazyFrame still inside Pillow
    mode: str  # the pooled mode, a key of MODE_DTYPES
    source_mode: str  # the file's own mode, before conversion
    format: str | None  # the file's format (PNG, JPEG, ...)
    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None
    exif: bytes | None = None
    durations: list[int] | None = None  # per frame, milliseconds
    loop: int | None = None

    @property
    def has_alpha(self) -> bool:
        return self.mode in ALPHA_MODES

    def with_frames(self, frames: Sequence[Frame]) -> Picture:
        return replace(self, frames=list(frames))

    def close(self) -> None:
        """Free pixels still held by Pillow (lazy frames)."""
        for frame in self.frames:
            if isinstance(frame, LazyFrame):
                frame.close()


def _target_mode(img: Image.Image, has_transparency: bool) -> str:
    mode = img.mode
    if mode in MODE_DTYPES:
        return mode
    if mode == "1":
        return "L"
    if mode in ("P", "PA"):
        return "RGBA" if has_transparency or mode == "PA" else "RGB"
    if mode.startswith("I;16"):
        return "I;16"
    if mode in ("La",):
        return "LA"
    if mode in ("RGBa", "RGBX"):
        return "RGBA" if mode == "RGBa" else "RGB"
    if mode == "I;32" or mode.startswith("I;32"):
        return "I"
    return "RGBA" if "A" in mode else "RGB"


def _has_transparency(img: Image.Image) -> bool:
    return img.mode in ("PA", "RGBA", "LA", "La", "RGBa") or "transparency" in img.info


def _raw_dtype(img: Image.Image) -> np.dtype:
    """The dtype of ``img.tobytes()`` for the modes poolcli decodes (after conversion)."""
    if img.mode == "I;16B":
        return np.dtype(">u2")
    if img.mode.startswith("I;16"):
        return np.dtype("<u2")
    return np.dtype(MODE_DTYPES[img.mode]).newbyteorder("=")


def _strip(img: Image.Image, top: int, bottom: int) -> np.ndarray:
    """Rows top:bottom of ``img`` as a read-only (rows, W, C) array.

    ``tobytes`` of a crop is about eight times faster than ``np.asarray`` of it (measured on a
    4096x4096 RGB image), and works strip by strip without a second copy of the whole image.
    """
    width = img.size[0]
    part = img if (top, bottom) == (0, img.size[1]) else img.crop((0, top, width, bottom))
    flat = np.frombuffer(part.tobytes(), dtype=_raw_dtype(img))
    return flat.reshape(bottom - top, width, -1)


def _pixels(img: Image.Image, mode: str) -> np.ndarray:
    """Pixels of ``img`` (already in ``mode``) as a writable (H, W, C) array in native byte order."""
    width, height = img.size
    dtype = np.dtype(MODE_DTYPES[mode])
    array = np.empty((height, width, len(img.getbands())), dtype=dtype)
    rows = max(1, _STRIP_BYTES // max(1, width * array.shape[2] * dtype.itemsize))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        array[top:bottom] = _strip(img, top, bottom)
    return array


def _orientation_fix(img: Image.Image) -> int | None:
    try:
        orientation = img.getexif().get(_ORIENTATION)
    except Exception:  # a broken EXIF block must not stop the pixels
        return None
    return orientation if orientation in range(2, 9) else None


_ORIENTATION = 0x0112
# TIFF tags that describe the pixel layout of the file they came from (a TIFF's "EXIF" is its
# whole first IFD): written again, they would contradict the pooled image.
_LAYOUT_TAGS = {
    254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 282, 283, 284, 296, 317, 320, 322, 323, 324,
    325, 338, 339, 340, 341,
}

_TRANSPOSES: dict[int | None, list[Image.Transpose]] = {
    2: [Image.Transpose.FLIP_LEFT_RIGHT],
    3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE],
    6: [Image.Transpose.ROTATE_270],
    7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_90],
}


def decode(source: str | bytes, *, auto_orient: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS,
           lazy: bool = False) -> Picture:
    """Read an image file (a path, or the file's bytes) into a :class:`Picture`.

    Every frame of an animation or multi-page file is decoded.  EXIF orientation is applied
    (unless ``auto_orient`` is false) and removed from the kept EXIF.  P becomes RGB (RGBA with
    transparency), 1 becomes L, other 16-bit gray variants I;16.  With ``lazy``, a single-frame
    image stays in Pillow as a :class:`LazyFrame` (call ``Picture.close()`` when done).

    Raises
    ------
    ImageError
        For anything that is not a readable image, with the reason.
    """
    # Pillow raises only above twice its limit (and warns between): poolcli checks the limit
    # itself, from the header, before any pixel is decoded.
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            # Pillow warns about damaged metadata it skips: the one-line error or the pixels say enough.
            warnings.simplefilter("ignore")
            return _open_and_decode(source, auto_orient, max_pixels, lazy)
    except UnidentifiedImageError:
        raise ImageError("not an image file Pillow can read") from None
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except IsADirectoryError:
        raise ImageError("is a folder, not a file") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError) as error:
        # Truncated or corrupt data surfaces as any of these from Pillow's decoders.
        reason = str(error) or type(error).__name__
        raise ImageError(f"corrupt or truncated image ({reason})") from None


def _open_and_decode(source: str | bytes, auto_orient: bool, max_pixels: int | None, lazy: bool) -> Picture:
    stream: BinaryIO | str = io.BytesIO(source) if isinstance(source, bytes) else source
    img = Image.open(stream)
    try:
        pixels = img.size[0] * img.size[1]
        if max_pixels and pixels > max_pixels:
            raise ImageError(
                f"image size ({img.size[0]}x{img.size[1]} = {pixels} pixels) exceeds the limit of {max_pixels} "
                "pixels (decompression bomb protection); raise it with --max-pixels N (0 removes it) "
                "if you trust this file"
            )
        picture = _decode_open(img, auto_orient, lazy)
    except BaseException:
        img.close()
        raise
    if not any(isinstance(f, LazyFrame) and f.image is img for f in picture.frames):
        img.close()  # a lazy frame still reading from it owns it now
    return picture


def _decode_open(img: Image.Image, auto_orient: bool, lazy: bool) -> Picture:
    file_format = img.format
    orientation = _orientation_fix(img) if auto_orient else None
    n_frames = getattr(img, "n_frames", 1)
    frames_iter = ImageSequence.Iterator(img) if n_frames > 1 else [img]
    frames_img = []
    durations = []
    transparency = False
    for frame in frames_iter:
        frame.load()
        durations.append(int(frame.info.get("duration", 0) or 0))
        transparency = transparency or _has_transparency(frame)
        frames_img.append(frame.copy() if n_frames > 1 else frame)
    mode = _target_mode(frames_img[0], transparency)
    arrays: list[Frame] = []
    for frame in frames_img:
        converted = frame if frame.mode == mode or frame.mode.startswith("I;16") else frame.convert(mode)
        for step in _TRANSPOSES.get(orientation, []):
            converted = converted.transpose(step)
        if lazy and n_frames == 1:
            arrays.append(LazyFrame(converted, mode))
            continue
        arrays.append(_pixels(converted, mode))
        if converted is not frame:
            converted.close()
    if len({a.shape for a in arrays}) > 1:
        raise ImageError("frames of different sizes are not supported")
    exif = None
    try:
        exif_data = img.getexif()
        stale = _LAYOUT_TAGS | ({_ORIENTATION} if orientation is not None else set())
        for tag in stale & set(exif_data):
            del exif_data[tag]
        exif = exif_data.tobytes() if len(exif_data) else None
    except Exception:  # unreadable EXIF is dropped, not fatal
        exif = None
    dpi = img.info.get("dpi")
    return Picture(
        frames=arrays,
        mode=mode,
        source_mode=img.mode,
        format=file_format,
        icc_profile=img.info.get("icc_profile") or None,
        dpi=(float(dpi[0]), float(dpi[1])) if dpi and len(dpi) == 2 and dpi[0] and dpi[1] else None,
        exif=exif,
        durations=durations if n_frames > 1 else None,
        loop=img.info.get("loop"),
    )


def formats_that_hold(mode: str) -> list[str]:
    return [fmt for fmt, modes in FORMAT_MODES.items() if mode in modes]


def check_format(mode: str, file_format: str) -> None:
    """Raise ImageError unless ``file_format`` stores ``mode`` pixels faithfully."""
    if mode not in FORMAT_MODES.get(file_format, set()):
        can = ", ".join(formats_that_hold(mode) + [".npy"])
        raise ImageError(f"cannot write {describe_mode(mode)} pixels as {file_format}; formats that can: {can}")


def describe_mode(mode: str) -> str:
    return {
        "L": "8-bit gray (L)",
        "LA": "8-bit gray with alpha (LA)",
        "RGB": "8-bit RGB",
        "RGBA": "8-bit RGBA",
        "CMYK": "8-bit CMYK",
        "I;16": "16-bit gray (I;16)",
        "I": "32-bit integer (I)",
        "F": "32-bit float (F)",
    }.get(mode, mode)


def _frame_image(array: np.ndarray, mode: str) -> Image.Image:
    """An (H, W, C) array as a Pillow image of ``mode``, read straight from the array's buffer."""
    height, width = array.shape[:2]
    data = np.ascontiguousarray(array, dtype=np.dtype(MODE_DTYPES[mode]).newbyteorder("="))
    return Image.frombuffer(mode, (width, height), data, "raw", mode, 0, 1)


def encode(picture: Picture, stream: BinaryIO, file_format: str, *, quality: int | None = None,
           dpi_scale: tuple[float, float] = (1.0, 1.0)) -> None:
    """Write ``picture`` to ``stream`` as ``file_format``, keeping ICC profile, EXIF (without a
    stale orientation), DPI scaled by ``dpi_scale`` (x, y), frame durations and loop count."""
    mode = picture.mode
    if mode == "I" and file_format == "PNG":
        mode = "I;16"  # 16-bit PNG; the caller checked that the values fit (pooling keeps them in range)
    check_format(mode, file_format)
    images = [_frame_image(cast(np.ndarray, frame), mode) for frame in picture.frames]  # pooled: arrays
    options: dict = {}
    if picture.icc_profile and file_format in ("PNG", "JPEG", "TIFF", "WEBP"):
        options["icc_profile"] = picture.icc_profile
    if picture.exif and file_format in ("PNG", "JPEG", "TIFF", "WEBP"):
        options["exif"] = picture.exif
    if picture.dpi and file_format in ("PNG", "JPEG", "TIFF", "BMP"):
        dpi = (picture.dpi[0] / dpi_scale[0], picture.dpi[1] / dpi_scale[1])
        options["dpi"] = tuple(round(v) for v in dpi) if file_format in ("JPEG", "BMP") else dpi
    if file_format in DEFAULT_QUALITY:
        options["quality"] = quality if quality is not None else DEFAULT_QUALITY[file_format]
    if len(images) > 1:
        if file_format not in ("PNG", "GIF", "WEBP", "TIFF"):
            raise ImageError(f"{file_format} cannot hold {len(images)} frames; use PNG, GIF, WebP or TIFF")
        options["save_all"] = True
        options["append_images"] = images[1:]
        if picture.durations and file_format != "TIFF":
            options["duration"] = picture.durations
        if picture.loop is not None and file_format != "TIFF":
            options["loop"] = picture.loop
    try:
        images[0].save(stream, format=file_format, **options)
    except (OSError, ValueError) as error:
        raise ImageError(f"cannot write {file_format}: {error}") from None
    finally:
        for image in images:
            image.close()


def format_for_extension(extension: str) -> str | None:
    return EXTENSION_FORMATS.get(extension.lower())


# Colours of explain's PNG picture, by the style keys of report.explanation_panels.
_PANEL_COLOURS = {
    "normal": ("#ffffff", "#000000"),
    "pad": ("#eeeeee", "#999999"),
    "tap": ("#ffd84d", "#000000"),
    "pad_tap": ("#bbbbbb", "#000000"),
    "winner": ("#d62728", "#ffffff"),
    "result": ("#1f77b4", "#ffffff"),
}


def draw_panels(panels: list[tuple[str, list[list[tuple[str, str]]], str]], stream: BinaryIO,
                per_row: int = 4) -> None:
    """Draw titled grids of numbers (``poolcli explain``'s picture) as one PNG."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=11)
    cell_w, cell_h, gap, title_h = 52, 24, 24, 22

    def width_of(rows: list) -> int:
        return max((len(r) for r in rows), default=0) * cell_w

    import textwrap

    widths = [max(width_of(rows), 200) for _, rows, _ in panels]
    captions = [textwrap.wrap(caption, max(20, w // 6)) for (_, _, caption), w in zip(panels, widths, strict=True)]
    sizes = [(w, len(rows) * cell_h + title_h + 8 + 14 * len(lines))
             for w, (_, rows, _), lines in zip(widths, panels, captions, strict=True)]
    lines = [sizes[i:i + per_row] for i in range(0, len(sizes), per_row)]
    total_w = max(sum(w for w, _ in line) + gap * (len(line) + 1) for line in lines)
    total_h = sum(max(h for _, h in line) for line in lines) + gap * (len(lines) + 1)
    canvas = Image.new("RGB", (total_w, total_h), "#ffffff")
    draw = ImageDraw.Draw(canvas)
    y = gap
    for start in range(0, len(panels), per_row):
        x = gap
        line = panels[start:start + per_row]
        line_h = max(h for _, h in sizes[start:start + per_row])
        for (title, rows, _), (w, _), caption_lines in zip(line, sizes[start:start + per_row],
                                                           captions[start:start + per_row], strict=True):
            draw.text((x, y), title, fill="#000000", font=font)
            for r, row in enumerate(rows):
                for c, (text, style) in enumerate(row):
                    background, ink = _PANEL_COLOURS.get(style, _PANEL_COLOURS["normal"])
                    box = (x + c * cell_w, y + title_h + r * cell_h, x + (c + 1) * cell_w - 1,
                           y + title_h + (r + 1) * cell_h - 1)
                    draw.rectangle(box, fill=background, outline="#888888")
                    draw.text((box[2] - 4, box[1] + cell_h // 2), text, fill=ink, font=font, anchor="rm")
            for n, text_line in enumerate(caption_lines):
                draw.text((x, y + title_h + len(rows) * cell_h + 4 + 14 * n), text_line, fill="#333333", font=small)
            x += w + gap
        y += line_h + gap
    canvas.save(stream, format="PNG")
