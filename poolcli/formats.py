"""What poolcli knows about pixel modes and file formats, as tables.

May import: the standard library only (no NumPy, no Pillow), so that the CLI, the batch planner
and the pipeline can ask "which extension does TIFF get?" without loading an image library.

- :data:`MODES`: the pixel modes poolcli pools, with their sample type, channels, alpha and
  whether ``--linear`` may treat them as sRGB.
- :data:`SOURCE_MODES`: how a file's own mode (as Pillow names it) becomes one of those.
- :data:`FORMATS`: what each output format holds: modes, metadata, frames, quality.
- :data:`EXTENSION_FORMATS` / :data:`READ_EXTENSIONS`: file names.

>>> FORMATS["JPEG"].holds("RGBA")
False
>>> formats_that_hold("F")
['TIFF']
>>> MODES["RGB;16"].description
'16-bit RGB'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Mode:
    """A pixel mode poolcli pools: frames of (H, W, channels) samples of ``dtype``."""

    dtype: str  # NumPy's name of the sample type
    channels: int
    description: str  # what the report calls it, e.g. "16-bit RGB"
    alpha: bool = False  # the last channel is alpha
    srgb: bool = False  # sRGB-encoded colour or gray: --linear may decode it


# Poolcli's names are Pillow's, plus "LA;16", "RGB;16" and "RGBA;16" for 16-bit gray with alpha
# and 16-bit colour (which Pillow cannot hold: PNG of those is read and written with imagecodecs).
MODES: dict[str, Mode] = {
    "L": Mode("uint8", 1, "8-bit gray (L)", srgb=True),
    "LA": Mode("uint8", 2, "8-bit gray with alpha (LA)", alpha=True, srgb=True),
    "RGB": Mode("uint8", 3, "8-bit RGB", srgb=True),
    "RGBA": Mode("uint8", 4, "8-bit RGBA", alpha=True, srgb=True),
    "CMYK": Mode("uint8", 4, "8-bit CMYK"),
    "I;16": Mode("uint16", 1, "16-bit gray (I;16)", srgb=True),
    "LA;16": Mode("uint16", 2, "16-bit gray with alpha", alpha=True, srgb=True),
    "RGB;16": Mode("uint16", 3, "16-bit RGB", srgb=True),
    "RGBA;16": Mode("uint16", 4, "16-bit RGBA", alpha=True, srgb=True),
    "I": Mode("int32", 1, "32-bit integer (I)"),
    "F": Mode("float32", 1, "32-bit float (F)"),
}

# What --background COLOR flattens an alpha mode into.
FLATTENED: dict[str, str] = {"LA": "L", "RGBA": "RGB", "LA;16": "I;16", "RGBA;16": "RGB;16"}

# A file's own mode (Pillow's name) -> the mode it is pooled in.  Modes of MODES map to
# themselves; a mode in neither table becomes RGBA if it has alpha ("A" in its name), else RGB.
# "P" becomes RGBA instead of RGB when the palette has a transparent entry.
SOURCE_MODES: dict[str, str] = {
    "1": "L",
    "P": "RGB",
    "PA": "RGBA",
    "La": "LA",
    "RGBa": "RGBA",
    "RGBX": "RGB",
    "I;16L": "I;16",
    "I;16B": "I;16",
    "I;16N": "I;16",
    "I;32": "I",
    "I;32L": "I",
    "I;32B": "I",
}


def pooled_mode(source_mode: str, transparency: bool = False) -> str:
    """The mode a file of ``source_mode`` is pooled in.

    >>> pooled_mode("P"), pooled_mode("P", transparency=True), pooled_mode("YCbCr"), pooled_mode("I;16B")
    ('RGB', 'RGBA', 'RGB', 'I;16')
    """
    if source_mode in MODES:
        return source_mode
    if source_mode == "P" and transparency:
        return "RGBA"
    return SOURCE_MODES.get(source_mode, "RGBA" if "A" in source_mode else "RGB")


@dataclass(frozen=True)
class Format:
    """What an output format keeps; poolcli checks this itself instead of letting Pillow convert
    silently (float pixels to RGB for WebP, alpha dropped for BMP)."""

    extension: str
    modes: frozenset[str]
    icc: bool = False
    exif: bool = False
    xmp: bool = False
    dpi: bool = False
    frames: bool = False
    quality: int | None = None  # the default quality of a lossy format
    integer_dpi: bool = False  # DPI stored as whole numbers

    def holds(self, mode: str) -> bool:
        return mode in self.modes

    def loses(self, icc: bool, exif: bool, xmp: bool, dpi: bool) -> list[str]:
        """The metadata present (true) that this format cannot store."""
        have = {"ICC profile": (icc, self.icc), "EXIF": (exif, self.exif), "XMP": (xmp, self.xmp),
                "DPI": (dpi, self.dpi)}
        return [name for name, (present, kept) in have.items() if present and not kept]


_8BIT = frozenset({"L", "RGB"})
FORMATS: dict[str, Format] = {
    "PNG": Format(".png", _8BIT | {"LA", "RGBA", "I;16", "LA;16", "RGB;16", "RGBA;16"}, icc=True, exif=True, xmp=True,
                  dpi=True, frames=True),
    "JPEG": Format(".jpg", _8BIT | {"CMYK"}, icc=True, exif=True, xmp=True, dpi=True, quality=92, integer_dpi=True),
    "TIFF": Format(".tif", _8BIT | {"LA", "RGBA", "CMYK", "I;16", "I", "F"}, icc=True, exif=True, xmp=True,
                   dpi=True, frames=True),
    "WEBP": Format(".webp", _8BIT | {"LA", "RGBA"}, icc=True, exif=True, xmp=True, frames=True, quality=90),
    "BMP": Format(".bmp", _8BIT, dpi=True, integer_dpi=True),
    "GIF": Format(".gif", _8BIT | {"RGBA"}, frames=True),
}

# File extensions poolcli reads and writes, and the format each means.
EXTENSION_FORMATS: dict[str, str] = {
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
FORMAT_EXTENSIONS: dict[str, str] = {name: fmt.extension for name, fmt in FORMATS.items()}
# Image files a folder walk picks up: what Pillow commonly reads, beyond what poolcli writes.
READ_EXTENSIONS: frozenset[str] = frozenset(EXTENSION_FORMATS) | {
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".jp2", ".pcx", ".qoi"}
DEFAULT_QUALITY: dict[str, int] = {name: fmt.quality for name, fmt in FORMATS.items() if fmt.quality is not None}
# PNG's deflate level (libdeflate's, poolcli/png.py) when --compression is not given: chosen by
# benchmarks/bench_compression.py (README, "PNG compression"): the fastest level within 10% of
# Pillow's default size (its level 6) on photographs, within 35% on flat images.
DEFAULT_COMPRESSION = 1

# Decompression-bomb limits (see images.decode): Pillow's default of about 89.5 megapixels per
# frame (--max-pixels), twice that over all frames of a file together, and at most this many
# frames (--max-frames).
DEFAULT_MAX_PIXELS = 89_478_485
FRAMES_BUDGET = 2
DEFAULT_MAX_FRAMES = 1000

# 32-bit integer pixels go to a 16-bit PNG when every value fits: the one place this rule lives.
NARROWED_MODES: dict[tuple[str, str], tuple[str, int, int]] = {("I", "PNG"): ("I;16", 0, 65535)}


def format_for_extension(extension: str) -> str | None:
    """The format an extension (with its dot, any case) means, or None.

    >>> format_for_extension(".JPEG")
    'JPEG'
    """
    return EXTENSION_FORMATS.get(extension.lower())


def formats_that_hold(mode: str) -> list[str]:
    return [name for name, fmt in FORMATS.items() if fmt.holds(mode)]


def describe_mode(mode: str) -> str:
    return MODES[mode].description if mode in MODES else mode


def is_zarr_store(path: str | Path) -> bool:
    """Is this folder a Zarr v2 or v3 array or group?"""
    folder = Path(path)
    return folder.is_dir() and any((folder / name).exists() for name in (".zarray", ".zgroup", "zarr.json"))


def is_zarr_path(path: str | Path) -> bool:
    """A ``.zarr`` folder (or any Zarr store folder): an input, never walked as a folder."""
    folder = Path(path)
    return folder.is_dir() and (folder.suffix.lower() == ".zarr" or is_zarr_store(folder))


TIFF_EXTENSIONS = (".tif", ".tiff", ".btf", ".tf8")


def is_tiff_name(name: str) -> bool:
    """A TIFF by its name alone (a URL, where looking at its bytes costs a request).

    >>> is_tiff_name("s3://b/scene.TIF"), is_tiff_name("a.png")
    (True, False)
    """
    return name.lower().endswith(TIFF_EXTENSIONS)


def is_tiff_path(source: str) -> bool:
    """A TIFF file, by its extension or its first bytes ("-", standard input, is not)."""
    if source == "-" or not Path(source).is_file():
        return False
    if Path(source).suffix.lower() in TIFF_EXTENSIONS:
        return True
    with open(source, "rb") as handle:
        return handle.read(4) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


# At most this many bytes of a stream per allowed pixel (RGBA float32, uncompressed), plus 1 MiB.
_BYTES_PER_PIXEL = 16


def stream_byte_limit(max_pixels: int | None) -> int | None:
    """The most bytes read from standard input or a FIFO: what an uncompressed image of
    ``max_pixels`` pixels of the widest kind could take; None without a pixel limit.

    >>> stream_byte_limit(100)
    1050176
    """
    return max_pixels * _BYTES_PER_PIXEL + (1 << 20) if max_pixels else None
