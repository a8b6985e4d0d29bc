"""Pooling arrays and image pixels with the engine (pure NumPy; no file I/O).

May import: NumPy, ``engine``, ``frames``, ``nodata`` and ``params`` (never Pillow: frames come in as the
:class:`~poolcli.frames.Frame` protocol, whatever decoder holds their rows).

Arrays are numbers: they follow torch's semantics exactly (an integer average truncates).
Pixels are pixels: max is torch's; an integer average is the exact window average rounded to
nearest, halves up, and saturates to the pixel range; alpha is premultiplied for averages unless
asked otherwise; ``linear`` averages sRGB values in linear light.
"""

from __future__ import annotations

import functools

import numpy as np

from poolcli import engine, nodata
from poolcli.engine import derived_planes
from poolcli.frames import Frame
from poolcli.params import PoolParams


def pool_array(x: engine.ArrayOrRows, params: PoolParams, want_indices: bool = False
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """Pool an (H, W), (C, H, W) or (N, C, H, W) array exactly as torch would."""
    if params.op == "max":
        if want_indices:
            return engine.max_pool2d(x, **params.max_args(), return_indices=True)
        return engine.max_pool2d(x, **params.max_args()), None
    return engine.avg_pool2d(x, **params.avg_args()), None


def pool_pixels(frame: Frame, params: PoolParams, *, has_alpha: bool = False,
                premultiply: bool = True, linear: bool = False, want_indices: bool = False,
                nodata_value: int | float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Pool one (H, W, C) frame of pixels; returns the (OH, OW, C) frame and, for max with
    ``want_indices``, torch's (C, OH, OW) indices.  Alpha, if any, is the last channel.

    With a ``nodata_value`` (``--nodata``), every channel (alpha too) follows the nodata rule of
    :mod:`poolcli.nodata` instead (docs/semantics.md §10.1), and no indices are made.

    Where the rule is per channel (max, plain averages) the engine reads ``Frame.planes()``:
    a frame still inside its decoder is read strip by strip, never copied whole; the
    alpha-weighted and linear-light rules take the whole array."""
    if nodata_value is not None:
        pool = nodata.avg_pool if params.spec.averages else nodata.max_pool
        return pool(frame.planes(), params, nodata_value).transpose(1, 2, 0), None
    per_channel = params.op == "max" or not (linear or (has_alpha and premultiply))
    if per_channel:
        return _pool_planes(frame.planes(), params, want_indices)
    planes = frame.to_array().transpose(2, 0, 1)  # a view: the engine reads the interleaved buffer as planes
    out = pool_pixel_planes(planes, params, has_alpha=has_alpha, premultiply=premultiply, linear=linear)
    return out.transpose(1, 2, 0), None


Planes = np.ndarray | engine.RowSource


class PooledFrame:
    """``source`` pooled by the pixel rules, computed strip by strip as its rows are read (the
    :class:`~poolcli.frames.Frame` protocol): the PNG writer pulls output rows while the input is
    still being decoded.  Rows of any cut equal the whole result (:func:`pool_pixel_planes`).

    >>> from poolcli.frames import ArrayFrame
    >>> source = ArrayFrame(np.arange(16, dtype=np.uint8).reshape(4, 4, 1))
    >>> frame = PooledFrame(source, PoolParams("max", (2, 2)), (2, 2, 1))
    >>> frame.rows(1, 2)[..., 0].tolist(), frame.to_array()[..., 0].tolist()
    ([[13, 15]], [[5, 7], [13, 15]])
    """

    def __init__(self, source: Frame, params: PoolParams, shape: tuple[int, int, int], *, has_alpha: bool = False,
                 premultiply: bool = True, linear: bool = False):
        self.source, self.params, self.shape, self.dtype = source, params, shape, source.dtype
        self._rules = dict(has_alpha=has_alpha, premultiply=premultiply, linear=linear)

    def rows(self, top: int, bottom: int) -> np.ndarray:
        planes = pool_pixel_planes(self.source.planes(), self.params, output_rows=(top, bottom), **self._rules)
        return planes.transpose(1, 2, 0)

    def to_array(self) -> np.ndarray:
        return np.ascontiguousarray(self.rows(0, self.shape[0]))

    def planes(self) -> np.ndarray:
        return self.to_array().transpose(2, 0, 1)

    def value_range(self) -> tuple[float, float]:
        array = self.to_array()
        return (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)

    def close(self) -> None:
        self.source.close()


def pool_pixel_planes(planes: Planes, params: PoolParams, *, has_alpha: bool = False, premultiply: bool = True,
                      linear: bool = False, output_rows: tuple[int, int] | None = None) -> np.ndarray:
    """Pool (C, H, W) pixel planes (an array or a :class:`~poolcli.engine.RowSource`) by the pixel
    rules; returns (C, OH, OW), or only output rows ``[o0, o1)`` of it with ``output_rows``.

    Strips of any cut concatenate to exactly the whole result (the strip machinery relies on it).

    Examples
    --------
    >>> import numpy as np
    >>> from poolcli.params import PoolParams
    >>> planes = np.array([[[10, 20], [30, 41]], [[255, 255], [0, 0]]], dtype=np.uint8)  # colour, alpha
    >>> pool_pixel_planes(planes, PoolParams("avg", (2, 2)), has_alpha=True).ravel().tolist()
    [15, 128]
    """
    rows = output_rows
    if params.op == "max":
        return engine.pool_rows("max", planes, rows, channels_last=True, **params.max_args())
    if linear:
        return _linear_average(planes, has_alpha, premultiply, params, rows)
    if has_alpha and premultiply:
        out_alpha = _rounded_average(derived_planes(planes, 1, planes.dtype, lambda p: p[-1:]), params, rows)
        return np.concatenate([_premultiplied_average(planes, params, rows), out_alpha], axis=0)
    if planes.dtype.kind == "f":
        return engine.pool_rows("avg", planes, rows, **params.avg_args())
    return _rounded_average(planes, params, rows)


def _premultiplied(planes: np.ndarray, channel: int) -> np.ndarray:
    """One colour channel times alpha (the last channel), in int64."""
    return planes[channel: channel + 1].astype(np.int64) * planes[-1:]


def _pool_planes(planes: np.ndarray | engine.RowSource, params: PoolParams,
                 want_indices: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Channels pooled independently: torch's max, torch's float average, rounded integer average.
    Values come back as (OH, OW, C) pixels, interleaved in memory where the engine allows."""
    if params.op == "max" and not want_indices:
        values, indices = engine.pool_rows("max", planes, channels_last=True, **params.max_args()), None
    elif params.op == "max":
        values, indices = pool_array(planes, params, want_indices)
    elif planes.dtype.kind == "f":
        values, indices = engine.avg_pool2d(planes, **params.avg_args()), None
    else:
        values, indices = _rounded_average(planes, params), None
    return values.transpose(1, 2, 0), indices


def _rounded_average(planes: Planes, params: PoolParams, rows: tuple[int, int] | None = None) -> np.ndarray:
    """Exact window averages rounded half up, saturated to the pixel type; (C, OH, OW) planes that
    are interleaved pixels in memory where the engine allows."""
    dtype = planes.dtype
    if params.divisor_override is None:
        # An average of pixels (and zero padding) always lies in the pixel range.
        return engine.pool_rows("avg_rounded", planes, rows, channels_last=True, **params.avg_args())
    as_int64 = derived_planes(planes, planes.shape[0], np.int64, lambda p: p.astype(np.int64))
    wide = engine.pool_rows("avg_rounded", as_int64,
                            rows, **params.avg_args())
    info = np.iinfo(dtype)
    return np.clip(wide, info.min, info.max).astype(dtype)


def _window_sums(planes: Planes, params: PoolParams, rows: tuple[int, int] | None = None) -> np.ndarray:
    args = dict(params.avg_args(), divisor_override=1)
    return engine.pool_rows("avg", planes, rows, **args)


def _premultiplied_average(planes: Planes, params: PoolParams, rows: tuple[int, int] | None = None) -> np.ndarray:
    """Colour weighted by alpha (the last plane): sum(c * a) / sum(a) per window, rounded half up.

    Fully transparent windows (sum(a) == 0) get colour 0.  The divisor rules of the window
    cancel out of the ratio; they apply to the alpha channel itself.
    """
    alpha_sums = _window_sums(derived_planes(planes, 1, np.int64, lambda p: p[-1:].astype(np.int64)), params, rows)[0]
    out = np.empty((planes.shape[0] - 1,) + alpha_sums.shape, dtype=planes.dtype)
    safe = np.where(alpha_sums > 0, alpha_sums, 1)
    for c in range(planes.shape[0] - 1):  # one channel at a time keeps the int64 temporaries small
        product = derived_planes(planes, 1, np.int64, functools.partial(_premultiplied, channel=c))
        sums = _window_sums(product, params, rows)[0]
        out[c] = np.where(alpha_sums > 0, engine.rounded_quotient(sums, safe), 0)
    return out


def _srgb_to_linear(values: np.ndarray) -> np.ndarray:
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(values: np.ndarray) -> np.ndarray:
    values = np.clip(values, 0.0, 1.0)
    return np.where(values <= 0.0031308, values * 12.92, 1.055 * values ** (1 / 2.4) - 0.055)


def _linear_average(planes: Planes, has_alpha: bool, premultiply: bool, params: PoolParams,
                    rows: tuple[int, int] | None = None) -> np.ndarray:
    """Average in linear light: decode sRGB (a lookup table), average, re-encode, round.
    Alpha (the last plane, if any) is averaged as a plain channel and, with ``premultiply``,
    weights the colour."""
    dtype = planes.dtype
    top = np.iinfo(dtype).max
    table = _srgb_to_linear(np.arange(top + 1, dtype=np.float64) / top)
    colors = planes.shape[0] - 1 if has_alpha else planes.shape[0]
    if not (has_alpha and premultiply):
        linear = derived_planes(planes, colors, np.float64, lambda p: table[p[:colors]])
        averaged = engine.pool_rows("avg", linear, rows, **params.avg_args())
    else:
        def weights(p: np.ndarray) -> np.ndarray:
            return p[-1:].astype(np.float64) / top

        alpha_sums = _window_sums(derived_planes(planes, 1, np.float64, weights), params, rows)
        weighted = derived_planes(planes, colors, np.float64, lambda p: table[p[:colors]] * weights(p))
        averaged = _window_sums(weighted, params, rows) / np.where(alpha_sums > 0, alpha_sums, 1.0)
    out_color = np.floor(_linear_to_srgb(averaged) * top + 0.5).astype(dtype)
    if not has_alpha:
        return out_color
    alpha = derived_planes(planes, 1, dtype, lambda p: p[-1:])
    return np.concatenate([out_color, _rounded_average(alpha, params, rows)])


def flatten(frame: np.ndarray, background: tuple[int, ...]) -> np.ndarray:
    """Alpha (the last channel) composited onto an opaque ``background`` (one value per colour
    channel, in the frame's range): ``(c*a + b*(M - a)) / M`` rounded half up, M the largest
    value.  Returns the colour channels only.

    >>> frame = np.array([[[200, 255], [200, 0], [200, 128]]], dtype=np.uint8)
    >>> flatten(frame, (100,)).ravel().tolist()
    [200, 100, 150]
    """
    top = np.iinfo(frame.dtype).max
    colour = frame[..., :-1].astype(np.int64)
    alpha = frame[..., -1:].astype(np.int64)
    composed = colour * alpha + np.asarray(background, np.int64) * (top - alpha)
    return engine.rounded_quotient(composed, top).astype(frame.dtype)
