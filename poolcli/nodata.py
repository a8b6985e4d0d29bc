"""Nodata-aware max and average pooling (docs/semantics.md §10.1), built on the engine.

May import: NumPy, ``engine``, ``errors`` and ``params`` (no Pillow, tifffile or Zarr: planes come
in as arrays or :class:`~poolcli.engine.RowSource`, nodata values as numbers).

Each nodata pixel is taken out of its window; a window without a valid pixel gives the nodata
value.  Both operations are a few engine passes over derived planes, so they keep the engine's
exactness and its strips: every function is a pure function of the input rows a strip needs,
and ``output_rows`` computes any cut of the output, bit-identical to the whole.

* max: nodata becomes the dtype's lowest value (``-inf``, ``INT_MIN``...), the engine pools that,
  and pooling the validity mask (1 valid, 0 nodata) marks the windows without a valid pixel.
* avg: the engine sums the values with nodata as ``+0.0`` (adding ``+0.0`` never changes torch's
  running sum, which starts at ``+0.0``) and counts the valid pixels; the divisor is torch's minus
  the window's nodata pixels (or ``divisor_override``).

A :class:`~poolcli.engine.RowSource` is read once per pass (twice), so an I/O layer should hand
over a source that keeps its current rows decoded.
"""

from __future__ import annotations

import math

import numpy as np

from poolcli import engine
from poolcli.engine import derived_planes
from poolcli.errors import PoolcliError
from poolcli.params import PoolParams

Number = int | float


class NodataError(PoolcliError, ValueError):
    """A nodata value that the data's dtype cannot hold (the message is the one-line reason)."""


def parse_nodata(text: str) -> Number | None:
    """A nodata value as written in ``--nodata`` or a ``GDAL_NODATA`` tag; ``None`` for ``none``.

    Integers stay exact ints (an int64 nodata value may not fit a float).

    Examples
    --------
    >>> parse_nodata("-9999"), parse_nodata(" 1e20 "), parse_nodata("nan"), parse_nodata("none")
    (-9999, 1e+20, nan, None)
    """
    value = text.strip().strip("\x00").strip()
    if value.lower() == "none":
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        raise NodataError(f"nodata {text.strip()!r} is not a number (give a number, nan or none)") from None


def nodata_value(value: Number, dtype: np.dtype | type) -> np.generic:
    """``value`` in ``dtype``, as pixels are compared with it and windows without data are filled.

    Integer dtypes need an integer in range; floats round ``value`` to the dtype (as GDAL does),
    but a finite value must not overflow it.

    Raises
    ------
    NodataError
        When the dtype cannot hold the value.

    Examples
    --------
    >>> nodata_value(-9999, np.int16), nodata_value(0.1, np.float32) == np.float32(0.1)
    (np.int16(-9999), np.True_)
    >>> nodata_value(-9999, np.uint8)
    Traceback (most recent call last):
    ...
    poolcli.nodata.NodataError: nodata -9999 is outside the range of uint8 data (0 to 255)
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise NodataError(f"nodata {value:g} is not an integer, so no {dtype} pixel can be nodata")
        if not info.min <= int(value) <= info.max:
            raise NodataError(f"nodata {value:g} is outside the range of {dtype} data ({info.min} to {info.max})")
        return dtype.type(int(value))
    if dtype.kind == "f":
        with np.errstate(over="ignore"):
            cast = dtype.type(value)
        if math.isinf(cast) and math.isfinite(value):
            raise NodataError(f"nodata {value:g} is outside the range of {dtype} data")
        return cast
    raise NodataError(f"nodata does not apply to {dtype} data")


def checked(text: str | None, dtype: np.dtype | type) -> Number | None:
    """The nodata value that ``text`` (``--nodata`` or GDAL_NODATA) gives data of ``dtype``:
    None for no text or ``none``; refused (:class:`NodataError`) when the dtype cannot hold it.

    >>> checked("-9999", np.int16), checked("none", np.int16), checked(None, np.uint8)
    (-9999, None, None)
    """
    value = parse_nodata(text) if text is not None else None
    if value is not None:
        nodata_value(value, dtype)
    return value


def valid_mask(values: np.ndarray, nodata: np.generic) -> np.ndarray:
    """True where a pixel holds data: not equal to ``nodata`` (for a NaN nodata: not NaN).

    >>> valid_mask(np.array([1.0, np.nan, -0.0]), np.float64(0)).tolist()
    [True, True, False]
    >>> valid_mask(np.array([1.0, np.nan]), np.float64("nan")).tolist()
    [True, False]
    """
    if isinstance(nodata, np.floating) and np.isnan(nodata):
        return ~np.isnan(values)
    return values != nodata


def _lowest(dtype: np.dtype) -> np.generic:
    return dtype.type(-np.inf) if dtype.kind == "f" else dtype.type(np.iinfo(dtype).min)


def _sum_dtype(dtype: np.dtype, taps: int) -> np.dtype:
    """torch's accumulator for the sums: float32 for float16 and float32, float64; for integers
    int32 where every window sum fits (8- and 16-bit data), else int64 (wrapping as torch's)."""
    if dtype.kind == "f":
        return np.dtype(np.float64 if dtype == np.float64 else np.float32)
    info = np.iinfo(dtype)
    fits = dtype.itemsize <= 2 and max(-int(info.min), int(info.max)) * taps < 2**31
    return np.dtype(np.int32 if fits else np.int64)


def _count_dtype(taps: int) -> np.dtype:
    """The narrowest dtype that holds a count of up to ``taps`` (the engine sums in it exactly)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if taps <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def max_pool(planes: engine.ArrayOrRows, params: PoolParams, nodata: Number,
             output_rows: tuple[int, int] | None = None) -> np.ndarray:
    """Nodata-aware max pooling of (C, H, W) planes (docs/semantics.md §10.1).

    Parameters
    ----------
    planes : numpy.ndarray or RowSource
        (C, H, W) input.
    params : PoolParams
        The pooling (``params.max_args()`` are torch's arguments).
    nodata : int or float
        The nodata value (see :func:`nodata_value`).
    output_rows : (int, int), optional
        Only output rows ``[o0, o1)``.

    Returns
    -------
    numpy.ndarray
        (C, OH, OW) in the input's dtype.

    Examples
    --------
    >>> x = np.array([[[1, -9999, 4]]], dtype=np.int16)
    >>> max_pool(x, PoolParams("max", (1, 3), (1, 1), (0, 1)), -9999).tolist()
    [[[1, 4, 4]]]
    >>> max_pool(np.full((1, 2, 2), -9999.0), PoolParams("max", (2, 2)), -9999).tolist()
    [[[-9999.0]]]
    """
    dtype, channels = np.dtype(planes.dtype), planes.shape[0]
    fill = nodata_value(nodata, dtype)
    lowest = _lowest(dtype)
    args = params.max_args()
    values = derived_planes(planes, channels, dtype, lambda p: np.where(valid_mask(p, fill), p, lowest))
    mask = derived_planes(planes, channels, np.uint8, lambda p: valid_mask(p, fill).view(np.uint8))
    best = engine.pool_rows("max", values, output_rows, **args)
    any_valid = engine.pool_rows("max", mask, output_rows, **args)
    return np.where(any_valid != 0, best, fill)


def avg_pool(planes: engine.ArrayOrRows, params: PoolParams, nodata: Number,
             output_rows: tuple[int, int] | None = None) -> np.ndarray:
    """Nodata-aware average pooling of (C, H, W) planes (docs/semantics.md §10.1).

    The sum of the valid pixels (torch's order and accumulator) divided by ``divisor_override``
    or by torch's divisor minus the window's nodata pixels; floats divide as torch does, integers
    round to nearest, halves up, and saturate.  Windows without a valid pixel give ``nodata``.
    Parameters and result as :func:`max_pool` (``params.avg_args()`` are torch's arguments).

    Examples
    --------
    The worked example of docs/semantics.md §10.1:

    >>> x = np.array([[[1, -9999, 4]]], dtype=np.float32)
    >>> avg_pool(x, PoolParams("avg", (1, 3), (1, 1), (0, 1)), -9999).tolist()
    [[[0.5, 2.5, 2.0]]]
    >>> avg_pool(x, PoolParams("avg", (1, 3), (1, 1), (0, 1), count_include_pad=False), -9999).tolist()
    [[[1.0, 2.5, 4.0]]]
    >>> avg_pool(np.array([[[7, 0, 8, 0]]], dtype=np.uint8), PoolParams("avg", (1, 4)), 0).tolist()
    [[[8]]]
    """
    dtype, channels = np.dtype(planes.dtype), planes.shape[0]
    fill = nodata_value(nodata, dtype)
    kernel_h, kernel_w = params.kernel
    work = _sum_dtype(dtype, kernel_h * kernel_w)
    args = dict(params.avg_args(), divisor_override=1)  # window sums
    zeroed = derived_planes(planes, channels, work,
                            lambda p: np.where(valid_mask(p, fill), p, 0).astype(work, copy=False))
    counted = _count_dtype(kernel_h * kernel_w)
    mask = derived_planes(planes, channels, counted, lambda p: valid_mask(p, fill).astype(counted))
    sums = engine.pool_rows("avg", zeroed, output_rows, **args)
    counts = engine.pool_rows("avg", mask, output_rows, **args)
    has_data = counts > 0
    divisor = _divisors(planes.shape[1:], params, output_rows, counts)
    if dtype.kind == "f":
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # 0/0 where no data: filled below
            averages = (sums / divisor.astype(work)).astype(dtype, copy=False) + dtype.type(0)
    else:
        info = np.iinfo(dtype)
        if work == np.int32:
            # |sum| < 2**31: floor((2*sum + d) / (2*d)) in float64 is exact (engine.py, step 3);
            # in place, as few passes as can be
            quotient = sums.astype(np.float64)
            denominator = np.where(divisor == 0, 1.0, divisor)  # 0 where no data: any divisor, filled below
            quotient *= 2
            quotient += denominator
            denominator *= 2
            quotient /= denominator
            np.floor(quotient, out=quotient)
        else:
            quotient = engine.rounded_quotient(sums, np.where(has_data, divisor, 1))
        averages = np.clip(quotient, info.min, info.max).astype(dtype)
    return np.where(has_data, averages, fill)


def _divisors(size: tuple[int, int], params: PoolParams, output_rows: tuple[int, int] | None,
              counts: np.ndarray) -> np.ndarray:
    """Each window's divisor: ``divisor_override``, or torch's minus the nodata pixels in it.

    torch's divisor counts the window's cells inside the padded extent (with count_include_pad)
    or inside the input; the input cells are ``real``, of which ``counts`` are valid.  Without
    padding cells in the count, the divisor is just ``counts``.
    """
    if params.divisor_override is not None:
        return np.full(counts.shape, params.divisor_override, dtype=np.int64)
    if not params.count_include_pad or params.padding == (0, 0):  # the ceil overhang never counts
        return counts.astype(np.int64)
    out_h, out_w = engine.output_size(size, params.kernel, params.effective_stride, params.padding, 1,
                                      params.ceil_mode)
    o0, o1 = output_rows if output_rows is not None else (0, out_h)

    def factors(axis: int, out: int, include_pad: bool) -> np.ndarray:
        return engine.axis_divisors(out, params.kernel[axis], params.effective_stride[axis], params.padding[axis],
                                    size[axis], include_pad)

    torch = np.outer(factors(0, out_h, params.count_include_pad)[o0:o1], factors(1, out_w, params.count_include_pad))
    real = np.outer(factors(0, out_h, False)[o0:o1], factors(1, out_w, False))
    return torch - (real - counts)
