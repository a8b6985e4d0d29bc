"""Pooling images from Python, through the same code as the ``poolcli`` command.

May import: ``params``; on first use ``images`` and ``pipeline`` (so NumPy and Pillow); never
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
from typing import TYPE_CHECKING, Literal, cast

from poolcli.params import OPS, Pair, PoolParams

if TYPE_CHECKING:
    from PIL import Image

IntOrPair = int | tuple[int, int]
Operation = Literal["max", "avg"]


class PoolError(ValueError):
    """An image that cannot be pooled as asked (unreadable, window too large, ...); the message
    is the one the command line prints after ``poolcli: error: FILE:``."""


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
        raise PoolError(str(error)) from None


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
        raise PoolError(f"{source}: {result.error}")
    return target
