"""Pooling images from Python, through the same code as the ``poolcli`` command.

May import: ``params`` and ``errors``; on first use ``images`` and ``pipeline`` (so NumPy and Pillow); never
Click or Rich, and Pillow only through ``images``.

:func:`pool_image` takes a path or a ``PIL.Image.Image`` and returns a ``PIL.Image.Image``;
:func:`pool_file` reads a file and writes one, exactly as ``poolcli max|avg SRC -o DST`` does.
Both apply the EXIF orientation, round integer averages to nearest, premultiply alpha (by
default), can average in linear light, and keep the ICC profile, EXIF and (scaled) DPI.  For
NumPy arrays use :func:`poolcli.max_pool2d` / :func:`poolcli.avg_pool2d` (torch-exact).

>>> from PIL import Image
>>> import poolcli
>>> img = Image.new("RGB", (4, 2), (10, 20, 30))
>>> img.putpixel((1, 1), (50, 60, 70))
>>> out = poolcli.pool_image(img, "avg", kernel_size=2)
>>> out.size, out.mode, out.getpixel((0, 0))
((2, 1), 'RGB', (20, 30, 40))
>>> poolcli.pool_image(img, "max", 2, stride=1).getpixel((0, 0))
(50, 60, 70)
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, cast, overload

from poolcli.errors import PoolError, PoolingError
from poolcli.params import OPS, Pair, PoolParams

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from poolcli.engine import ArrayOrRows

IntOrPair = int | tuple[int, int]
Operation = Literal["max", "avg"]
Size = int | Sequence[int]  # the array functions take torch's ints, pairs and lists
# How the array functions read an array's axes: torch's (C, H, W) / (N, C, H, W), or channels last.
Layout = Literal["CHW", "HWC"]
# The command line's words in a shared reason, and a Python caller's (the keyword arguments).
_KEYWORDS = [
    (re.compile(r"-k (\d+),(\d+)"), r"kernel_size=(\1, \2)"),
    (re.compile(r"-k (\d+)"), r"kernel_size=\1"),
    (re.compile(r"--ceil-mode / -p\b"), "ceil_mode=True / padding"),
    (re.compile(r"--max-pixels 0\b"), "max_pixels=0"),
    (re.compile(r"--max-pixels\b"), "max_pixels"),
    (re.compile(r"--no-premultiply\b"), "premultiply=False"),
    (re.compile(r"--no-auto-orient\b"), "auto_orient=False"),
    (re.compile(r"--linear\b"), "linear=True"),
    (re.compile(r"--format\b"), "file_format"),
    (re.compile(r"--quality\b"), "quality"),
    (re.compile(r"--compression\b"), "compression"),
]


def _in_keywords(reason: str) -> str:
    """A reason worded for the command line, in the API's keyword arguments.

    >>> _in_keywords("the output would be 0x0; use -k 512 or less, or --ceil-mode / -p")
    'the output would be 0x0; use kernel_size=512 or less, or ceil_mode=True / padding'
    """
    for flag, keyword in _KEYWORDS:
        reason = flag.sub(keyword, reason)
    return reason


def _pair(value: IntOrPair) -> Pair:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _params(op: Operation, kernel_size: IntOrPair, stride: IntOrPair | None, padding: IntOrPair,
            dilation: IntOrPair, ceil_mode: bool, count_include_pad: bool,
            divisor_override: int | None) -> PoolParams:
    if op not in OPS:
        raise ValueError(f'op must be "max" or "avg", not {op!r}')
    if not OPS[op].dilates and dilation not in (1, (1, 1)):
        raise ValueError("dilation applies to max pooling only")
    return PoolParams(op=op, kernel=_pair(kernel_size), stride=None if stride is None else _pair(stride),
                      padding=_pair(padding), dilation=_pair(dilation), ceil_mode=ceil_mode,
                      count_include_pad=count_include_pad, divisor_override=divisor_override)


def pool_image(image: str | os.PathLike[str] | Image.Image, op: Operation, kernel_size: IntOrPair,
               stride: IntOrPair | None = None, padding: IntOrPair = 0, dilation: IntOrPair = 1,
               ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: int | None = None,
               *, premultiply: bool = True, linear: bool = False, auto_orient: bool = True,
               max_pixels: int | None = None) -> Image.Image:
    """Max or average pooling of one image, as ``poolcli max|avg`` pools it.

    Parameters
    ----------
    image : path or PIL.Image.Image
        A file Pillow reads, or an image already open (a multi-frame image: use :func:`pool_file`).
    op : {"max", "avg"}
        torch's MaxPool2d or AvgPool2d.
    kernel_size, stride, padding, dilation, ceil_mode, count_include_pad, divisor_override
        torch's parameters (an int or a (height, width) pair); ``stride=None`` is the kernel;
        ``dilation`` is for max only, ``count_include_pad`` and ``divisor_override`` for avg.
    premultiply, linear
        (avg) weight colour by alpha (``--no-premultiply`` turns it off); average in linear light.
    auto_orient
        Apply the EXIF orientation first (and drop the tag).
    max_pixels
        Decompression-bomb limit for a path (default Pillow's, 89,478,485); 0: none.

    Returns
    -------
    PIL.Image.Image
        The pooled image, in the input's mode (P becomes RGB or RGBA, 1 becomes L), with the ICC
        profile, EXIF and DPI (divided by the stride) in ``info``.

    Raises
    ------
    PoolError
        A file that cannot be read, pixels that cannot be pooled, a window larger than the image.
    ValueError
        Parameters torch would refuse (PoolError is a ValueError too).
    """
    from poolcli import images
    from poolcli.pipeline import JobError, Options, pool_picture
    from poolcli.pipeline import _read_source as read_source

    params = _params(op, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad, divisor_override)
    try:
        if images.is_pillow_image(image):
            picture = images.decode_image(image, auto_orient=auto_orient)
        else:
            limit = images.DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
            path = os.fspath(cast("str | os.PathLike[str]", image))  # not a PIL image: a path
            source = read_source(path, limit)  # the command's checks: missing, empty, a folder
            picture = images.decode(source, auto_orient=auto_orient, max_pixels=limit)
        if len(picture.frames) > 1:
            raise PoolError(f"the image has {len(picture.frames)} frames: pool_file keeps them all")
        pooled, _ = pool_picture(picture, params, Options(premultiply=premultiply, linear=linear))
        stride_h, stride_w = params.effective_stride
        return images.to_pillow(pooled, dpi_scale=(stride_w, stride_h))
    except (images.ImageError, JobError) as error:
        named = "" if images.is_pillow_image(image) else f"{os.fspath(cast('str | os.PathLike[str]', image))}: "
        raise PoolError(named + _in_keywords(str(error))) from None


def pool_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], op: Operation, kernel_size: IntOrPair,
              stride: IntOrPair | None = None, padding: IntOrPair = 0, dilation: IntOrPair = 1,
              ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: int | None = None,
              *, premultiply: bool = True, linear: bool = False, auto_orient: bool = True,
              file_format: str | None = None, quality: int | None = None, compression: int | None = None,
              max_pixels: int | None = None) -> str:
    """Pool the image or ``.npy`` array ``src`` into the file ``dst``: ``poolcli max|avg SRC -o DST``.

    The parameters are those of :func:`pool_image`, plus how to write: ``file_format`` ("PNG",
    "JPEG", ... or "NPY"; default: from ``dst``'s extension), ``quality`` (JPEG/WebP) and
    ``compression`` (PNG deflate level 0-9; TIFF deflate).  Every frame of an animation is pooled.
    ``dst`` appears whole or not at all; ``src`` is never overwritten.

    Returns
    -------
    str
        ``dst``.

    Raises
    ------
    PoolError
        With the reason the command line would print.

    Examples
    --------
    >>> import numpy as np, pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> np.save(folder / "m.npy", np.arange(9.0).reshape(3, 3))
    >>> out = pool_file(folder / "m.npy", folder / "o.npy", "max", 2, stride=1)
    >>> np.load(out).tolist()
    [[4.0, 5.0], [7.0, 8.0]]
    """
    from poolcli import images
    from poolcli.pipeline import Job, Options, run

    params = _params(op, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad, divisor_override)
    source, target = os.fspath(src), os.fspath(dst)
    if os.path.exists(target) and os.path.exists(source) and os.path.samefile(source, target):
        raise PoolError(f"{target}: refusing to overwrite the input")
    options = Options(file_format=None if file_format is None else file_format.upper(), quality=quality,
                      compression=compression, auto_orient=auto_orient, premultiply=premultiply, linear=linear,
                      max_pixels=images.DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
    result = run(Job(source, target), params, options)
    if result.status != "ok":
        raise PoolError(f"{source}: {_in_keywords(str(result.error))}")
    return target


def _looks_channels_last(shape: tuple[int, ...]) -> bool:
    """An (H, W, 3|4) or (N, H, W, 3|4) image, rather than torch's (C, H, W) with a width of 3 or 4?

    >>> _looks_channels_last((480, 640, 3)), _looks_channels_last((3, 480, 640)), _looks_channels_last((1, 4, 4))
    (True, False, False)
    """
    return len(shape) in (3, 4) and shape[-1] in (3, 4) and shape[-3] > 4 and shape[-2] > 4


def _channels_first(x: ArrayOrRows, layout: Layout | None) -> tuple[ArrayOrRows, bool]:
    """``x`` with its channels where torch wants them, and whether they must go back last."""
    shape = tuple(getattr(x, "shape", ()))
    if layout is None and _looks_channels_last(shape):
        c, h, w = shape[-3:]
        raise PoolingError(
            f"an array of shape {shape} looks like an image with its channels last ({w} of them): torch, and "
            f"so poolcli, read it as (C, H, W) = ({c}, {h}, {w}) and would pool the {w} channels as a width; "
            f'pass layout="HWC" to pool it as an image, or layout="CHW" to pool it as torch does')
    if layout not in (None, "CHW", "HWC"):
        raise PoolingError(f'layout must be "CHW" or "HWC", not {layout!r}')
    if layout != "HWC" or len(shape) < 3:
        return x, False
    import numpy as np  # only here: moving an axis is a view

    return np.moveaxis(cast("np.ndarray", x), -1, -3), True


def _channels_back(out: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.ascontiguousarray(np.moveaxis(out, -3, -1))


@overload
def max_pool2d(x: ArrayOrRows, kernel_size: Size, stride: Size | None = None,
               padding: Size = 0, dilation: Size = 1,
               ceil_mode: bool = False, return_indices: Literal[False] = False, *,
               layout: Layout | None = None) -> np.ndarray: ...


@overload
def max_pool2d(x: ArrayOrRows, kernel_size: Size, stride: Size | None = None,
               padding: Size = 0, dilation: Size = 1,
               ceil_mode: bool = False, *, return_indices: Literal[True],
               layout: Layout | None = None) -> tuple[np.ndarray, np.ndarray]: ...


@overload
def max_pool2d(x: ArrayOrRows, kernel_size: Size, stride: Size | None,
               padding: Size, dilation: Size, ceil_mode: bool,
               return_indices: Literal[True], *, layout: Layout | None = None) -> tuple[np.ndarray, np.ndarray]: ...


@overload
def max_pool2d(x: ArrayOrRows, kernel_size: Size, stride: Size | None = None,
               padding: Size = 0, dilation: Size = 1,
               ceil_mode: bool = False, return_indices: bool = False, *,
               layout: Layout | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...


def max_pool2d(x: ArrayOrRows, kernel_size: Size, stride: Size | None = None,
               padding: Size = 0, dilation: Size = 1,
               ceil_mode: bool = False, return_indices: bool = False, *,
               layout: Layout | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """``torch.nn.functional.max_pool2d`` for NumPy arrays (:func:`poolcli.engine.max_pool2d`), and
    a ``layout`` for images whose channels come last.

    Parameters
    ----------
    x, kernel_size, stride, padding, dilation, ceil_mode, return_indices
        As :func:`poolcli.engine.max_pool2d` (torch's names, order and defaults).
    layout : {None, "CHW", "HWC"}
        ``"CHW"``: torch's reading, (H, W), (C, H, W) or (N, C, H, W).  ``"HWC"``: channels last,
        (H, W, C) or (N, H, W, C), as images load (Pillow, imageio); the result (and the indices)
        come back in that layout.  ``None`` (the default) is torch's reading, except that an array
        whose last axis looks like colour channels (3 or 4, after two axes longer than 4) is
        refused rather than pooled along its channels: say which layout it is.

    Raises
    ------
    PoolingError
        Torch's refusals, an ambiguous layout, or an unknown one.

    Examples
    --------
    >>> import numpy as np
    >>> rgb = np.zeros((6, 8, 3), np.uint8)
    >>> max_pool2d(rgb, 2, layout="HWC").shape
    (3, 4, 3)
    >>> max_pool2d(rgb, 2, layout="CHW").shape
    (6, 4, 1)
    >>> max_pool2d(rgb, 2)
    Traceback (most recent call last):
    ...
    poolcli.errors.PoolingError: an array of shape (6, 8, 3) looks like an image with its channels last (3 of \
them): torch, and so poolcli, read it as (C, H, W) = (6, 8, 3) and would pool the 3 channels as a width; pass \
layout="HWC" to pool it as an image, or layout="CHW" to pool it as torch does
    """
    from poolcli import engine

    planes, back = _channels_first(x, layout)
    if not return_indices:
        values = engine.max_pool2d(planes, kernel_size, stride, padding, dilation, ceil_mode)
        return _channels_back(values) if back else values
    values, indices = engine.max_pool2d(planes, kernel_size, stride, padding, dilation, ceil_mode, True)
    return (_channels_back(values), _channels_back(indices)) if back else (values, indices)


def avg_pool2d(x: ArrayOrRows, kernel_size: Size, stride: Size | None = None,
               padding: Size = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None, *, layout: Layout | None = None) -> np.ndarray:
    """``torch.nn.functional.avg_pool2d`` for NumPy arrays (:func:`poolcli.engine.avg_pool2d`), and a
    ``layout`` for images whose channels come last, as :func:`max_pool2d` takes it.

    >>> import numpy as np
    >>> avg_pool2d(np.arange(48.0).reshape(4, 4, 3), 2, layout="HWC")[0, 0].tolist()
    [7.5, 8.5, 9.5]
    """
    from poolcli import engine

    planes, back = _channels_first(x, layout)
    values = engine.avg_pool2d(planes, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    return _channels_back(values) if back else values
