"""Pooling arrays and image pixels with the engine (pure NumPy; no file I/O).

May import: NumPy, ``engine``, ``frames`` and ``params`` (never Pillow: frames come in as the
:class:`~poolcli.frames.Frame` protocol, whatever decoder holds their rows).

Arrays are numbers: they follow torch's semantics exactly (an integer average truncates).
Pixels are pixels: max is torch's; an integer average is the exact window average rounded to
nearest, halves up, and saturates to the pixel range; alpha is premultiplied for averages unless
asked otherwise; ``linear`` averages sRGB values in linear light.
"""

from __future__ import annotations

import numpy as np

from poolcli import engine
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
                premultiply: bool = True, linear: bool = False, want_indices: bool = False
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Pool one (H, W, C) frame of pixels; returns the (OH, OW, C) frame and, for max with
    ``want_indices``, torch's (C, OH, OW) indices.  Alpha, if any, is the last channel.

    Where the rule is per channel (max, plain averages) the engine reads ``Frame.planes()``:
    a frame still inside its decoder is read strip by strip, never copied whole; the
    alpha-weighted and linear-light rules take the whole array."""
    per_channel = params.op == "max" or not (linear or (has_alpha and premultiply))
    if per_channel:
        return _pool_planes(frame.planes(), params, want_indices)
    planes = frame.to_array().transpose(2, 0, 1)  # a view: the engine reads the interleaved buffer as planes
    color = planes[:-1] if has_alpha else planes
    alpha = planes[-1:] if has_alpha else None
    if linear:
        out_color = _linear_average(color, alpha if premultiply else None, params)
    else:
        assert alpha is not None  # not per channel and not linear: an alpha to premultiply by
        out_color = _premultiplied_average(color, alpha, params)
    if alpha is None:
        return out_color.transpose(1, 2, 0), None
    out = np.concatenate([out_color, _rounded_average(alpha, params)], axis=0)
    return out.transpose(1, 2, 0), None


def _pool_planes(planes: np.ndarray | engine.RowSource, params: PoolParams,
                 want_indices: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Channels pooled independently: torch's max, torch's float average, rounded integer average."""
    if params.op == "max":
        values, indices = pool_array(planes, params, want_indices)
    elif planes.dtype.kind == "f":
        values, indices = engine.avg_pool2d(planes, **params.avg_args()), None
    else:
        values, indices = _rounded_average(planes, params), None
    return values.transpose(1, 2, 0), indices


def _rounded_average(planes: np.ndarray | engine.RowSource, params: PoolParams) -> np.ndarray:
    """Exact window averages rounded half up, saturated to the pixel type."""
    dtype = planes.dtype
    if params.divisor_override is None:
        # An average of pixels (and zero padding) always lies in the pixel range.
        return engine.avg_pool2d_rounded(planes, **params.avg_args())
    if isinstance(planes, engine.RowSource):
        source = planes
        planes = engine.RowSource(source.shape, np.int64, lambda top, bottom: source.read(top, bottom).astype(np.int64))
    else:
        planes = planes.astype(np.int64)
    wide = engine.avg_pool2d_rounded(planes, **params.avg_args())
    info = np.iinfo(dtype)
    return np.clip(wide, info.min, info.max).astype(dtype)


def _window_sums(planes: np.ndarray, params: PoolParams) -> np.ndarray:
    args = dict(params.avg_args(), divisor_override=1)
    return engine.avg_pool2d(planes, **args)


def _premultiplied_average(color: np.ndarray, alpha: np.ndarray, params: PoolParams) -> np.ndarray:
    """Colour weighted by alpha: sum(c * a) / sum(a) per window, rounded half up.

    Fully transparent windows (sum(a) == 0) get colour 0.  The divisor rules of the window
    cancel out of the ratio; they apply to the alpha channel itself.
    """
    alpha_sums = _window_sums(alpha.astype(np.int64), params)[0]
    out = np.empty((color.shape[0],) + alpha_sums.shape, dtype=color.dtype)
    safe = np.where(alpha_sums > 0, alpha_sums, 1)
    weights = alpha[0].astype(np.int64)
    for c in range(color.shape[0]):  # one channel at a time keeps the int64 temporaries small
        sums = _window_sums(color[c].astype(np.int64) * weights, params)
        out[c] = np.where(alpha_sums > 0, engine.rounded_quotient(sums, safe), 0)
    return out


def _srgb_to_linear(values: np.ndarray) -> np.ndarray:
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(values: np.ndarray) -> np.ndarray:
    values = np.clip(values, 0.0, 1.0)
    return np.where(values <= 0.0031308, values * 12.92, 1.055 * values ** (1 / 2.4) - 0.055)


def _linear_average(color: np.ndarray, alpha: np.ndarray | None, params: PoolParams) -> np.ndarray:
    """Average in linear light: decode sRGB (a lookup table), average, re-encode, round."""
    top = np.iinfo(color.dtype).max
    table = _srgb_to_linear(np.arange(top + 1, dtype=np.float64) / top)
    linear = table[color]  # float64 planes
    if alpha is None:
        averaged = engine.avg_pool2d(linear, **params.avg_args())
    else:
        weights = alpha[0].astype(np.float64) / np.iinfo(alpha.dtype).max
        alpha_sums = _window_sums(weights, params)
        averaged = _window_sums(linear * weights, params) / np.where(alpha_sums > 0, alpha_sums, 1.0)
    encoded = np.floor(_linear_to_srgb(averaged) * top + 0.5)
    return encoded.astype(color.dtype)


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
