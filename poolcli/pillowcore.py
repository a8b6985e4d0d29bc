"""The few Pillow internals poolcli's readers lean on, in one place, feature-detected once.

May import: NumPy, Pillow and the standard library (``images`` is its only user).

Pillow decodes a file into memory it allocates itself, and reads a PNG's trailing chunks only by
decoding its pixels.  Four things here go around that, each with a public fallback that gives
the same pixels (only slower, or with one more copy):

- :func:`row_decoder`: Pillow's own decoder writing unfiltered PNG rows straight into a NumPy
  array (``Image._getdecoder`` and ``setimage`` on an image mapped over the array), for rows
  read while the file is still being decoded.  Fallback: None, and the file is decoded whole.
- :func:`load_into`: ``ImageFile.load`` decoding into a NumPy array instead of Pillow's memory
  (a JPEG's pixels, pooled without being copied out).  Fallback: None, and the pixels are
  copied out of Pillow.
- :func:`forget_pixels`: an opened image marked loaded without decoding it (its tile emptied,
  ``Image.core.new`` of nothing), so that ``getexif()`` reads the chunks already parsed instead
  of decoding the pixels once more.  Fallback: False, and the caller decodes.
- :func:`skip_preinit`: ``Image.open`` without importing the plugins of other formats
  (``Image._initialized``), for a PNG or a JPEG.  Fallback: nothing skipped.

:data:`PRIVATE` says whether the internals were found (checked once, at import); setting it to
False (the tests do) makes every function take its public fallback.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageFile


def _detect() -> bool:
    """Whether this Pillow has every internal the functions below use, as they use them."""
    try:
        probe = Image.frombuffer("L", (1, 1), np.zeros((1, 1), np.uint8), "raw", "L", 0, 1)
        return (callable(getattr(Image, "_getdecoder", None)) and callable(getattr(Image.core, "new", None))
                and isinstance(getattr(Image, "_initialized", None), int)
                and callable(getattr(ImageFile, "_get_oserror", None))
                and hasattr(probe, "im") and hasattr(ImageFile.ImageFile, "load_prepare"))
    except Exception:  # any surprise in an internal means: use the public path
        return False


PRIVATE: bool = _detect()

# Pillow modes whose memory is one of these NumPy layouts, as Image.frombuffer maps it: (the mode
# mapped, samples per pixel).  RGB is kept as RGBX: four bytes a pixel.
_MAPPED = {"L": ("L", 1), "RGB": ("RGBX", 4), "RGBA": ("RGBA", 4)}


def skip_preinit(file_format: str) -> None:
    """Let ``Image.open`` skip its first step, which imports the BMP, GIF, JPEG, PNG and PPM
    plugins (5 to 10 ms, a tenth of a small image's run): a PNG or a JPEG needs only its own.
    Pillow imports every plugin itself (``Image.init``) the first time a file or format is not
    one it has."""
    if file_format == "PNG":
        from PIL import PngImagePlugin  # noqa: F401  (registers PNG)
    elif file_format == "JPEG":
        from PIL import JpegImagePlugin  # noqa: F401  (registers JPEG)
    else:
        return
    if PRIVATE:
        Image._initialized = max(Image._initialized, 1)


def decoder_error(status: int) -> OSError:
    """Pillow's words for a decoder's error ``status``, as ``ImageFile.load`` raises them."""
    if PRIVATE:
        return ImageFile._get_oserror(status, encoder=False)
    return OSError(f"decoder error {status}")


def row_decoder(mode: str, codec: str, raw: str, buffer: np.ndarray, mapped: str) -> Any:
    """Pillow's ``codec`` decoder for ``mode`` pixels stored as ``raw``, set to write into
    ``buffer`` ((H, W) or (H, W, samples), mapped by Pillow as ``mapped``): an object with
    ``decode(data)`` -> (bytes consumed, status) and ``cleanup()``; None without the internals."""
    if not PRIVATE:
        return None
    height, width = buffer.shape[:2]
    decoder = Image._getdecoder(mode, codec, raw)
    # The decoder holds a reference to the mapped image, which holds one to the buffer.
    decoder.setimage(Image.frombuffer(mapped, (width, height), buffer, "raw", mapped, 0, 1).im, (0, 0, width, height))
    return decoder


def forget_pixels(img: Image.Image) -> bool:
    """Mark ``img`` (opened, not loaded) as loaded while holding no pixels, so that nothing,
    ``getexif()`` included, decodes it; False (``img`` untouched) without the internals."""
    if not PRIVATE or not isinstance(img, ImageFile.ImageFile):
        return False
    img.tile = []
    img.im = Image.core.new(img.mode, (0, 0))
    return True


def load_into(img: Image.Image) -> np.ndarray | None:
    """Decode ``img`` (an opened single-frame L, RGB or RGBA file, not loaded yet) into a new
    (H, W, samples) uint8 array instead of Pillow's own memory, and return it: one sample for L,
    four for RGBA, and four for RGB too (Pillow's layout, RGBX: the fourth is padding).  None
    (``img`` untouched) for other modes, or without the internals.  Pillow's ``load`` does the
    decoding, its checks and errors included."""
    if not PRIVATE or img.mode not in _MAPPED or not isinstance(img, ImageFile.ImageFile) \
            or getattr(img, "_im", True) is not None or not img.tile:
        return None
    mapped, samples = _MAPPED[img.mode]
    width, height = img.size
    buffer = np.empty((height, width, samples), dtype=np.uint8)
    target = Image.frombuffer(mapped, (width, height), buffer, "raw", mapped, 0, 1)
    img.im = target.im  # ImageFile.load_prepare keeps an image it already has
    img.load()
    if img.im is not target.im:  # this Pillow made its own after all: its pixels, not the buffer's
        return None
    return buffer
