"""Pure NumPy 2-D max and average pooling with the exact semantics of PyTorch 2.13 on the CPU.

The public functions mirror ``torch.nn.functional``: same names, parameter order, defaults,
output shapes, validation order and messages, tie/NaN rules and index format.  The rules are
those of ``docs/semantics.md``; the section (§) and table-row (T) numbers in comments refer to it.

How it is fast
--------------
Work is cut into blocks of whole output rows (and of channels when planes are small) whose input
rows fit in the L2 cache.  Each block copies its input rows once into a padded scratch slab (or
reads the input itself when it needs no padding or cast) and pools it with vectorised NumPy
passes:

* max is separable: one pass over rows, then one over columns; long stride-1 windows use the
  doubling trick (max of 7 = max of two overlapping maxes of 4), so k=7 costs 3 passes, not 6;
* integer sums are separable too (exact in any order), with binary decomposition for long windows;
* float sums keep torch's exact row-major, sequential addition order (bit-exact results), as one
  vectorised pass per kernel tap; strided windows first copy the slab's column phases (every
  s-th column) so that every tap is a contiguous view.

Integer pixels that arrive channels-last (Pillow's ``(H, W, C)`` buffer seen as ``(C, H, W)``)
are pooled on their interleaved rows, all channels at once, with no planar copy: along a row, a
window tap is the row shifted by whole pixels, a contiguous view.  Strided columns pick every
s-th pixel, which NumPy walks best channel by channel.  ``pool_rows(channels_last=True)`` (what
:mod:`poolcli.pixels` asks for) returns such results interleaved, as a ``(C, OH, OW)`` view of
``(OH, OW, C)`` memory; the public functions return C-contiguous planes.

Blocks run on a small thread pool (NumPy releases the GIL); every output element is computed by
the same code whatever the thread count, so results never depend on it.

How averages are divided
------------------------
Each block's window sums are made in an accumulator chosen by :func:`_accumulator`:

========================  =================  ==============================================
input dtype               accumulator        why
========================  =================  ==============================================
float16, float32          float32            torch's opmath type (§3, T32, T33)
float64                   float64            torch (T34)
uint8, <= 257 taps        uint16             exact, and twice the SIMD lanes of int32
other ints of <= 16 bits  int32              exact while ``max|x| * taps < 2**31``
int32, int64, ...         int64              torch's int64 sum (T30, T31)
========================  =================  ==============================================

The divisor of a cell is the product of two per-axis factors (:func:`axis_divisors`), or the
override.  The factors change only near the edges, so each block is divided in a few rectangles
of one scalar divisor each.  A *finisher* turns sums into averages; :func:`avg_pool2d` uses the
truncating one (:func:`_finish_truncated`, torch's C++ division toward zero), and
:func:`avg_pool2d_rounded` the rounding one (:func:`_finish_rounded`, nearest, halves up).  Both
pick the cheapest exact way for the accumulator and divisor, in this order:

1. **Shift** (:func:`_power_of_two_shift`): unsigned sums and a power-of-two divisor (8-bit
   k2, k4): ``sum >> m``; the rounding finisher first adds half the divisor when the sums leave
   room for it, else adds bit ``m - 1`` (the half) back after the shift.
2. **Integer division** (:func:`_integer_divisor`): sums that cannot be negative (unsigned
   input, bounded by :func:`_sum_range`) and a positive divisor: NumPy's integer division by a
   scalar (SIMD, a multiply by the divisor's reciprocal and a shift, exact for every sum);
   rounding adds ``d // 2`` first (``floor((2s + d) / 2d) == (s + d // 2) // d``) when that
   cannot overflow the accumulator.
3. **Float quotient**: float accumulators divide once in their own type, then round to the
   output dtype and add ``+0.0`` (torch's ``out = 0; out += q``: no ``-0.0``).  int32 sums
   (``|sum| < 2**31``) divide in float64, where the quotient is close enough that ``trunc`` (or
   ``floor((2*sum + d) / (2*d))`` when rounding) lands on the exact integer.
4. **Exact int64**: int64 sums use integer floor division corrected toward zero (truncating) or
   :func:`rounded_quotient` (rounding), with no intermediate that could overflow.

Integer results that leave the output dtype's range wrap through int64 (:func:`_may_wrap`), or
in the unsafe cast from the accumulator, which keeps the same low bits, as torch's conversions do.

May import: NumPy, the standard library and ``errors`` (its two exception classes) only (no Pillow, Rich or
Click).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol, TypeAlias, overload

import numpy as np
import numpy.typing as npt

from poolcli.errors import PoolingError, PoolingTypeError

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

__all__ = [
    "ArrayOrRows",
    "AxisArithmetic",
    "PoolingError",
    "PoolingTypeError",
    "RowSource",
    "available_cpus",
    "avg_pool2d",
    "avg_pool2d_rounded",
    "axis_arithmetic",
    "axis_divisors",
    "derived_planes",
    "get_num_threads",
    "max_pool2d",
    "output_size",
    "rounded_quotient",
    "set_num_threads",
]

IntOrPair = int | Sequence[int]


_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
# Scratch slabs of about this many bytes: measured best on this project's 2-core machines
# (interleaved A/B against 1 and 4 MiB); smaller blocks pay more Python overhead per NumPy call,
# larger ones fall out of cache.
_SLAB_BYTES = 2 * 1024 * 1024
# Blocks of at least this many channels whose padded rows are at most this long are laid out
# channels-innermost (measured 1.6x faster on (32, 256, 14, 14) feature maps).
_CHANNELS_LAST_MIN = 8
_SHORT_ROW = 64
# Below this many input elements, thread hand-off costs more than it saves.
_PARALLEL_MIN_ELEMENTS = 1 << 16
# Stride-1 windows of at least this many taps are reduced by doubling (max or sum of 2m taps from
# two results of m taps): log2(k) passes instead of k - 1.  From 4 taps on it saves a pass (2
# instead of 3); at 3 taps both ways take 2 passes, and the direct one copies less.
_DOUBLING_MIN_TAPS = 4

# torch's names for dtypes in "not implemented for '...'" messages (docs/semantics.md §5).
_TORCH_DTYPE_NAMES = {
    "bool": "Bool",
    "complex64": "ComplexFloat",
    "complex128": "ComplexDouble",
    "uint16": "UInt16",
    "uint32": "UInt32",
    "uint64": "UInt64",
}


# --------------------------------------------------------------------------------------------
# Output-size arithmetic (docs/semantics.md §1)
# --------------------------------------------------------------------------------------------


class AxisArithmetic(NamedTuple):
    """The output-size computation for one axis, step by step (docs/semantics.md §1).

    ``output = (numerator // stride) + 1``, minus one when ``corrected`` (ceil mode dropped a
    last window that would start in the right padding).
    """

    size: int
    kernel: int
    stride: int
    padding: int
    dilation: int
    ceil_mode: bool
    effective_kernel: int  # dilation * (kernel - 1) + 1
    numerator: int  # size + 2*padding - effective_kernel (+ stride - 1 in ceil mode)
    uncorrected: int  # numerator // stride + 1
    corrected: bool  # ceil mode dropped a window starting in the right padding
    output: int


def axis_arithmetic(
    size: int, kernel: int, stride: int, padding: int = 0, dilation: int = 1, ceil_mode: bool = False
) -> AxisArithmetic:
    """Compute one axis's output size the way torch does, keeping every intermediate number.

    No validation beyond ``stride != 0`` is done: the result may be ``< 1``.

    Examples
    --------
    >>> a = axis_arithmetic(5, 2, 2, padding=1, ceil_mode=True)
    >>> a.uncorrected, a.corrected, a.output
    (4, True, 3)
    """
    if stride == 0:
        raise PoolingError("stride should not be zero")
    effective = dilation * (kernel - 1) + 1
    numerator = size + 2 * padding - effective + (stride - 1 if ceil_mode else 0)
    uncorrected = numerator // stride + 1  # div_rtn: floor, also for negative numerators
    corrected = bool(ceil_mode and (uncorrected - 1) * stride >= size + padding)
    return AxisArithmetic(
        size, kernel, stride, padding, dilation, bool(ceil_mode), effective, numerator,
        uncorrected, corrected, uncorrected - 1 if corrected else uncorrected,
    )


@overload
def output_size(
    size: int,
    kernel_size: int,
    stride: int | None = None,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int: ...


@overload
def output_size(
    size: Sequence[int],
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    ceil_mode: bool = False,
) -> tuple[int, int]: ...


def output_size(
    size: IntOrPair,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    ceil_mode: bool = False,
) -> int | tuple[int, int]:
    """Output length of pooling along one axis (ints) or two axes (pairs), as torch computes it.

    ``stride=None`` means the kernel.  Includes the ceil-mode correction that drops a last window
    starting in the right padding.  The value is not validated and may be ``< 1``.

    Examples
    --------
    >>> output_size(3, 2, 1)
    2
    >>> output_size((6, 7), 1, 2, ceil_mode=True)
    (3, 4)
    """
    if isinstance(size, (int, np.integer)):
        if stride is None:
            stride = kernel_size
        return axis_arithmetic(int(size), int(kernel_size), int(stride), int(padding),  # type: ignore[arg-type]
                               int(dilation), ceil_mode).output  # type: ignore[arg-type]
    sizes = _pair(size)
    kernels = _pair(kernel_size)
    strides = kernels if stride is None or _is_empty(stride) else _pair(stride)
    paddings, dilations = _pair(padding), _pair(dilation)
    rows, cols = (
        axis_arithmetic(sizes[a], kernels[a], strides[a], paddings[a], dilations[a], ceil_mode).output
        for a in range(2)
    )
    return rows, cols


def _is_empty(value: object) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 0


def _pair(value: IntOrPair) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    items = [int(v) for v in value]
    return (items[0], items[0]) if len(items) == 1 else (items[0], items[1])


# --------------------------------------------------------------------------------------------
# Argument parsing and validation, in torch's order (docs/semantics.md §2)
# --------------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _type_name(value: object) -> str:
    cls = type(value)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"


def _int_list(op: str, name: str, position: int, value: object, allow_none: bool) -> list[int]:
    """Python argument parsing of an ``int[2]`` argument: an int or a sequence of ints."""
    if value is None and allow_none:
        return []
    if _is_int(value):
        return [int(value)]  # type: ignore[call-overload]
    if isinstance(value, (tuple, list)):
        for item in value:
            if not _is_int(item):
                raise PoolingTypeError(
                    f"{op}(): argument '{name}' failed to unpack the object at pos {position} with "
                    f'error "type must be tuple of ints,but got {_type_name(item)}"'
                )
        return [int(v) for v in value]
    raise PoolingTypeError(
        f"{op}(): argument '{name}' (position {position}) must be tuple of ints, not {_type_name(value)}"
    )


def _check_bool(op: str, name: str, position: int | None, value: object) -> bool:
    if not isinstance(value, bool):
        where = f" (position {position})" if position is not None else ""
        raise PoolingTypeError(f"{op}(): argument '{name}'{where} must be bool, not {_type_name(value)}")
    return value


def _cxx_div(a: int, b: int) -> int:
    """C++ integer division: truncates toward zero (the pad limit in Pool.h uses it)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


@dataclass(frozen=True)
class _Plan:
    """Everything a pooling call needs once its arguments passed validation."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    in_size: tuple[int, int]
    out_size: tuple[int, int]

    def span(self, axis: int, n_out: int) -> int:
        """Input positions (padded) covered by ``n_out`` consecutive windows along an axis: the
        rows of a block's slab (axis 0), or its columns (axis 1, all output columns)."""
        return (n_out - 1) * self.stride[axis] + self.dilation[axis] * (self.kernel[axis] - 1) + 1

    def taps_needed(self, axis: int) -> int:
        """Input positions (padded) covered by all windows along an axis, ceil overhang included."""
        return self.span(axis, self.out_size[axis])


class _Args(NamedTuple):
    """Parsed pooling arguments, per axis (H, W)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]


def _validate(
    op: str,
    x: ArrayOrRows,
    kernel_size: object,
    stride: object,
    padding: object,
    dilation: object,
    ceil_mode: object,
    divisor_override: object = None,
) -> _Plan:
    """Every check torch makes, in its order (docs/semantics.md §2); the first failure raises."""
    args = _parse_args(op, kernel_size, stride, padding, dilation, ceil_mode, divisor_override)
    _check_ndim(op, x.ndim, divisor_override)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = args
    height, width = x.shape[-2], x.shape[-1]
    rows = _checked_axis(height, kh, sh, ph, dh, ceil_mode)  # H is judged before W
    cols = _checked_axis(width, kw, sw, pw, dw, ceil_mode)
    _check_shape(args, tuple(x.shape), (rows, cols))
    return _Plan(args.kernel, args.stride, args.padding, args.dilation, (height, width), (rows, cols))


def _parse_args(
    op: str,
    kernel_size: object,
    stride: object,
    padding: object,
    dilation: object,
    ceil_mode: object,
    divisor_override: object,
) -> _Args:
    """§2 steps 1-6: Python argument parsing (types), then the lengths, then the int32 range."""
    kernel = _int_list(op, "kernel_size", 2, kernel_size, allow_none=False)
    strides = _int_list(op, "stride", 3, stride, allow_none=True)
    pads = _int_list(op, "padding", 4, padding, allow_none=False)
    dils = _int_list(op, "dilation", 5, dilation, allow_none=False)
    if op == "max_pool2d":
        _check_bool(op, "ceil_mode", 6, ceil_mode)
    else:  # avg_pool2d's binding names its keyword arguments without positions
        _check_bool(op, "ceil_mode", None, ceil_mode)
        if divisor_override is not None and not _is_int(divisor_override):
            raise PoolingTypeError(
                f"{op}(): argument 'divisor_override' must be int, not {_type_name(divisor_override)}"
            )

    if len(kernel) not in (1, 2):
        raise PoolingError(f"{op}: kernel_size must either be a single int, or a tuple of two ints")
    if len(strides) not in (0, 1, 2):
        raise PoolingError(f"{op}: stride must either be omitted, a single int, or a tuple of two ints")
    if len(pads) not in (1, 2):
        raise PoolingError(f"{op}: padding must either be a single int, or a tuple of two ints")
    if len(dils) not in (1, 2):
        raise PoolingError(f"{op}: dilation must be either a single int, or a tuple of two ints")

    args = _Args(
        (kernel[0], kernel[-1]),
        (kernel[0], kernel[-1]) if not strides else (strides[0], strides[-1]),  # omitted: the kernel
        (pads[0], pads[-1]),
        (dils[0], dils[-1]),
    )
    if any(not _INT32_MIN <= v <= _INT32_MAX for pair in args for v in pair):
        raise PoolingError("value cannot be converted to type int without overflow")
    return args


def _check_ndim(op: str, ndim: int, divisor_override: object) -> None:
    """§2 step 7 for max_pool2d; for avg_pool2d, the divisor check and torch's ``size(-3)``."""
    if op == "max_pool2d":
        # 2-D is this library's extension: judged as one channel (torch wants 3-D or 4-D).
        if ndim not in (2, 3, 4):
            raise PoolingError("non-empty 3D or 4D (batch mode) tensor expected for input")
        return
    if divisor_override is not None and int(divisor_override) == 0:  # type: ignore[call-overload]
        raise PoolingError("divisor must be not zero")
    if ndim < 2:  # torch reads size(-3); 2-D is accepted here as one channel
        if ndim == 0:
            raise PoolingError("Dimension specified as -3 but tensor has no dimensions")
        raise PoolingError("Dimension out of range (expected to be in range of [-1, 0], but got -3)")


def _check_shape(args: _Args, shape: tuple[int, ...], out_size: tuple[int, int]) -> None:
    """§2 step 9, torch's ``pool2d_shape_check``: signs, accepted dims, plain-kernel pad, output >= 1."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = args
    if kw <= 0 or kh <= 0:
        raise PoolingError(f"kernel size should be greater than zero, but got kH: {kh} kW: {kw}")
    if sw <= 0 or sh <= 0:
        raise PoolingError(f"stride should be greater than zero, but got dH: {sh} dW: {sw}")
    if dh <= 0 or dw <= 0:
        raise PoolingError(f"dilation should be greater than zero, but got dilationH: {dh} dilationW: {dw}")
    # 2-D: (H, W) both non-empty; 3-D: (C, H, W) all non-empty; 4-D: the batch may be empty.
    non_batch = shape if len(shape) <= 3 else shape[1:]
    if len(shape) > 4 or 0 in non_batch:
        raise PoolingError(
            "Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, "
            f"but got:[{', '.join(str(s) for s in shape)}]"
        )
    if kw // 2 < pw or kh // 2 < ph:
        raise PoolingError(
            "pad should be smaller than or equal to half of kernel size, but got "
            f"padW = {pw}, padH = {ph}, kW = {kw}, kH = {kh}"
        )
    rows, cols = out_size
    if cols < 1 or rows < 1:
        channels = 1 if len(shape) == 2 else shape[-3]
        raise PoolingError(
            f"Given input size: ({channels}x{shape[-2]}x{shape[-1]}). "
            f"Calculated output size: ({channels}x{rows}x{cols}). Output size is too small"
        )


def _checked_axis(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: object) -> int:
    """torch's ``pooling_output_shape`` for one axis: its three checks, then the size."""
    if stride == 0:
        raise PoolingError("stride should not be zero")
    if pad < 0:
        raise PoolingError(f"pad must be non-negative, but got pad: {pad}")
    if pad > _cxx_div((kernel - 1) * dilation + 1, 2):
        raise PoolingError(
            "pad should be at most half of effective kernel size, but got "
            f"pad={pad}, kernel_size={kernel} and dilation={dilation}"
        )
    return axis_arithmetic(size, kernel, stride, pad, dilation, bool(ceil_mode)).output


def _check_dtype(op: str, x: ArrayOrRows) -> None:
    kind = x.dtype.kind
    if kind in "iu" or (kind == "f" and x.dtype.itemsize <= 8):
        return
    name = _TORCH_DTYPE_NAMES.get(x.dtype.name, x.dtype.name)
    raise PoolingTypeError(f'"{op}" not implemented for \'{name}\'')


def _as_array(x: object) -> ArrayOrRows:
    return x if isinstance(x, (np.ndarray, RowSource)) else np.asarray(x)


class Rows(Protocol):
    """The one row protocol of poolcli's planes: a (C, H, W) image whose rows ``read(top,
    bottom)`` gives as a (C, bottom - top, W) array (any strides).  Strips
    (:mod:`poolcli.strips`), the TIFF and Zarr readers and :class:`RowSource` all are one; an
    image frame (:class:`poolcli.frames.Frame`) is the same rows seen channels-last."""

    @property
    def shape(self) -> tuple[int, int, int]: ...

    @property
    def dtype(self) -> np.dtype: ...

    def read(self, top: int, bottom: int) -> np.ndarray: ...


class RowSource:
    """A :class:`Rows` made of a function: a (C, H, W) input whose rows are read on demand, in
    strips, instead of a whole array.

    ``read(top, bottom)`` returns rows ``top:bottom`` as an array of shape (C, bottom - top, W)
    (any strides).  The pooling functions accept a RowSource wherever they accept an array and
    pull only the rows each block needs, so a large image never has to exist as one array beside
    its decoded form.  ``read`` may be called from several threads at once.

    Examples
    --------
    >>> import numpy as np
    >>> planes = np.arange(18.0).reshape(2, 3, 3)
    >>> source = RowSource(planes.shape, planes.dtype, lambda top, bottom: planes[:, top:bottom])
    >>> max_pool2d(source, 2, 1).tolist() == max_pool2d(planes, 2, 1).tolist()
    True
    """

    ndim = 3

    def __init__(self, shape: Sequence[int], dtype: npt.DTypeLike, read: Callable[[int, int], np.ndarray]):
        channels, height, width = (int(v) for v in shape)
        self.shape: tuple[int, int, int] = (channels, height, width)
        self.dtype = np.dtype(dtype)
        self.read = read

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize


# What the pooling functions accept: an array, or a (C, H, W) input read in row strips.
ArrayOrRows: TypeAlias = np.ndarray | RowSource
# The operations of pool_rows: torch's two, and the rounded average of integer pixels.
RowsOp: TypeAlias = Literal["max", "avg", "avg_rounded"]


def derived_planes(planes: ArrayOrRows, channels: int, dtype: npt.DTypeLike,
                   compute: Callable[[np.ndarray], np.ndarray]) -> ArrayOrRows:
    """Planes computed from ``planes`` (channel picks, casts, masks): at once for an array, and
    strip by strip, as each block reads its rows, for a :class:`RowSource` (the pixel and
    nodata rules pool such planes without making the whole derived array).

    >>> planes = np.arange(8, dtype=np.uint8).reshape(2, 2, 2)
    >>> alpha = derived_planes(RowSource(planes.shape, planes.dtype, lambda t, b: planes[:, t:b]),
    ...                        1, np.int64, lambda p: p[-1:].astype(np.int64))
    >>> alpha.shape, alpha.dtype.name, alpha.read(1, 2).tolist()
    ((1, 2, 2), 'int64', [[[6, 7]]])
    """
    if isinstance(planes, np.ndarray):
        return compute(planes)
    source = planes
    return RowSource((channels, *source.shape[1:]), np.dtype(dtype),
                     lambda top, bottom: compute(source.read(top, bottom)))


class _BatchOfOne:
    """A RowSource seen as (1, C, H, W), indexed the way blocks read their rows."""

    def __init__(self, source: RowSource):
        self.source = source
        self.shape = (1, *source.shape)
        self.dtype = source.dtype
        self.size = source.size
        self.itemsize = source.itemsize

    def __getitem__(self, index: tuple) -> np.ndarray:
        _, channels, rows, cols = index
        return self.source.read(rows.start, rows.stop)[channels, :, cols]


# A 4-D (N, C, H, W) view of the input, as blocks read it.
_Input4D: TypeAlias = np.ndarray | _BatchOfOne


# --------------------------------------------------------------------------------------------
# Threads and blocks
# --------------------------------------------------------------------------------------------

_thread_lock = threading.Lock()
_num_threads: int | None = None
_pool: ThreadPoolExecutor | None = None
_pool_owner: tuple[int, int] | None = None  # (pid, size): a forked child must not reuse the parent's pool


def available_cpus() -> int:
    """CPUs this process may run on (its affinity), at least 1.

    Examples
    --------
    >>> available_cpus() >= 1
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)


def get_num_threads() -> int:
    """Number of threads the pooling functions use (default: the CPUs this process may run on).

    Examples
    --------
    >>> get_num_threads() >= 1
    True
    """
    limit = getattr(_thread_limit, "value", None)
    if limit is not None:
        return limit
    return _num_threads if _num_threads is not None else available_cpus()


_thread_limit = threading.local()  # limited_threads(): a limit for the calls of one thread only


@contextlib.contextmanager
def limited_threads(n: int) -> Iterator[None]:
    """At most ``n`` pooling threads for the calls made by this thread inside the block (a small
    image is pooled faster on one thread than handed off); other threads keep their count.

    Examples
    --------
    >>> with limited_threads(1):
    ...     get_num_threads()
    1
    """
    previous = getattr(_thread_limit, "value", None)
    _thread_limit.value = max(1, min(n, get_num_threads()))
    try:
        yield
    finally:
        _thread_limit.value = previous


def set_num_threads(n: int | None) -> None:
    """Set the number of threads for pooling (``None`` restores the default).

    Results are identical for every thread count; only speed changes.

    Examples
    --------
    >>> set_num_threads(1); get_num_threads()
    1
    >>> set_num_threads(None)
    """
    global _num_threads
    if n is not None and (not _is_int(n) or n < 1):
        raise ValueError(f"number of threads must be a positive integer, got {n!r}")
    _num_threads = None if n is None else int(n)


def _executor(size: int) -> ThreadPoolExecutor:
    global _pool, _pool_owner
    with _thread_lock:
        owner = (os.getpid(), size)
        if _pool is None or _pool_owner != owner:
            from concurrent.futures import ThreadPoolExecutor  # here: a run on one thread never pays its import

            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="poolcli")
            _pool_owner = owner
        return _pool


class _Block(NamedTuple):
    batch: int
    c0: int
    c1: int
    r0: int  # output rows r0:r1
    r1: int


def _blocks(x4: _Input4D, plan: _Plan, out_channels_last_friendly: bool, itemsize: int,
            rows: tuple[int, int] | None = None) -> list[_Block]:
    n_batch, channels = x4.shape[0], x4.shape[1]
    first, out_h = rows if rows is not None else (0, plan.out_size[0])
    width = plan.taps_needed(1)
    rows_per_out = plan.stride[0]
    plane_bytes = plan.taps_needed(0) * width * itemsize
    blocks: list[_Block] = []
    if plane_bytes <= _SLAB_BYTES:
        per_block = max(1, _SLAB_BYTES // max(plane_bytes, 1))
        for b in range(n_batch):
            for c0 in range(0, channels, per_block):
                blocks.append(_Block(b, c0, min(channels, c0 + per_block), first, out_h))
        return blocks
    # Channels-last input: take every channel at once so each input cache line is read once.
    c_step = channels if out_channels_last_friendly else 1
    row_bytes = rows_per_out * width * itemsize * c_step
    r_step = max(1, _SLAB_BYTES // max(row_bytes, 1))
    for b in range(n_batch):
        for c0 in range(0, channels, c_step):
            for r0 in range(first, out_h, r_step):
                blocks.append(_Block(b, c0, min(channels, c0 + c_step), r0, min(out_h, r0 + r_step)))
    return blocks


def _run(blocks: list[_Block], work: Callable[[_Block], None], total_elements: int) -> None:
    """Run ``work`` on every block, on the thread pool when that pays.

    IEEE results (inf - inf = NaN, overflow to inf) are the answer, not an error: NumPy's
    floating-point warnings are silenced around the work, in whichever thread runs it.
    """

    def run_chunk(chunk: list[_Block]) -> None:
        with np.errstate(all="ignore"):
            for block in chunk:
                work(block)

    threads = min(get_num_threads(), len(blocks))
    if threads <= 1 or total_elements < _PARALLEL_MIN_ELEMENTS:
        run_chunk(blocks)
        return
    # Contiguous runs of blocks per thread: neighbours share input rows in cache.
    chunks = [blocks[i * len(blocks) // threads:(i + 1) * len(blocks) // threads] for i in range(threads)]
    for future in [_executor(threads).submit(run_chunk, chunk) for chunk in chunks]:
        future.result()


def _is_channels_last(x4: _Input4D) -> bool:
    if isinstance(x4, _BatchOfOne):
        return True  # strips of interleaved pixels: read every channel of a row at once
    s = x4.strides
    return x4.shape[1] > 1 and abs(s[1]) < abs(s[3]) and abs(s[1]) < abs(s[2])


def _as_4d(x: ArrayOrRows) -> _Input4D:
    if isinstance(x, RowSource):
        return _BatchOfOne(x)
    return x.reshape((1, 1) + x.shape) if x.ndim == 2 else (x[None] if x.ndim == 3 else x)


def _slab(x4: _Input4D, block: _Block, plan: _Plan, dtype: np.dtype, pad_value: object) -> np.ndarray:
    """The input rows a block needs, padded: a view of the input when it already is that
    (no padding or overhang in the block, right dtype, unit-stride rows), else a scratch copy."""
    (sh, _), (ph, pw) = plan.stride, plan.padding
    rows = plan.span(0, block.r1 - block.r0)
    top = block.r0 * sh - ph
    if block.c1 - block.c0 >= _CHANNELS_LAST_MIN and plan.taps_needed(1) <= _SHORT_ROW:
        # Many small planes (a network's feature maps): with channels innermost in memory,
        # NumPy's loops run over the channels instead of rows a few pixels long.
        return _fill_slab(x4, block, plan, dtype, pad_value, channels_last=True)
    if (
        isinstance(x4, np.ndarray)
        and x4.dtype == dtype
        and pw == 0
        and top >= 0
        and top + rows <= plan.in_size[0]
        and plan.taps_needed(1) <= plan.in_size[1]
        and x4.strides[3] == x4.itemsize
    ):
        return x4[block.batch, block.c0: block.c1, top: top + rows]
    return _fill_slab(x4, block, plan, dtype, pad_value)


_thread_scratch = threading.local()


def _scratch(shape: tuple[int, ...], dtype: np.dtype, role: str = "slab") -> np.ndarray:
    """A scratch array for this thread, reused from block to block: fresh megabyte-sized
    allocations cost page faults every time, a cost that showed on cold calls.  Arrays of
    different ``role`` are never the same memory, whatever their shapes."""
    cache = getattr(_thread_scratch, "arrays", None)
    if cache is None:
        cache = _thread_scratch.arrays = {}
    key = (shape, np.dtype(dtype).str, role)
    array = cache.get(key)
    if array is None:
        if len(cache) > 16:  # edge blocks have other shapes; keep the cache small
            cache.clear()
        array = cache[key] = np.empty(shape, dtype=dtype)
    return array


def _fill_slab(x4: _Input4D, block: _Block, plan: _Plan, dtype: np.dtype, pad_value: object,
               channels_last: bool = False) -> np.ndarray:
    """Copy the input rows a block needs into a scratch slab padded with ``pad_value``.

    The slab covers every tap of the block's windows, including padding and ceil-mode overhang.
    It is indexed (channels, rows, columns); with ``channels_last`` its memory holds the channels
    innermost, and NumPy's ufuncs (which follow memory order) loop over them.
    """
    (sh, _), (ph, pw) = plan.stride, plan.padding
    height, width = plan.in_size
    rows = plan.span(0, block.r1 - block.r0)
    cols = plan.taps_needed(1)
    top = block.r0 * sh - ph  # input row of slab row 0 (may be negative: padding)
    if channels_last:
        slab = _scratch((rows, cols, block.c1 - block.c0), dtype).transpose(2, 0, 1)
    else:
        slab = _scratch((block.c1 - block.c0, rows, cols), dtype)
    r_lo, r_hi = max(top, 0), min(top + rows, height)
    c_hi = min(cols - pw, width)
    if r_lo > top:
        slab[:, : r_lo - top] = pad_value
    if r_hi < top + rows:
        slab[:, max(r_hi - top, 0):] = pad_value
    if r_hi > r_lo:
        inner = slab[:, r_lo - top: r_hi - top]
        if pw:
            inner[:, :, :pw] = pad_value
        if pw + c_hi < cols:
            inner[:, :, pw + c_hi:] = pad_value
        inner[:, :, pw: pw + c_hi] = x4[block.batch, block.c0: block.c1, r_lo:r_hi, :c_hi]
    return slab


def _is_interleaved(x4: _Input4D) -> bool:
    """Integer pixels whose channels are innermost (Pillow's (H, W, C) buffer seen as (C, H, W)):
    pooled on their interleaved rows, where every window tap is a contiguous shifted view.
    Integer sums and maxima are exact in any order; floats keep torch's order on planes."""
    return x4.dtype.kind in "iu" and _is_channels_last(x4)


def _interleaved_blocks(x4: _Input4D, plan: _Plan, itemsize: int, rows: tuple[int, int]) -> list[_Block]:
    """Blocks of whole output rows, every channel at once, whose interleaved slab is cache-sized."""
    channels = x4.shape[1]
    row_bytes = plan.stride[0] * plan.taps_needed(1) * channels * itemsize
    step = max(1, _SLAB_BYTES // max(row_bytes, 1))
    first, last = rows
    return [_Block(b, 0, channels, r0, min(last, r0 + step))
            for b in range(x4.shape[0]) for r0 in range(first, last, step)]


def _interleaved_slab(x4: _Input4D, block: _Block, plan: _Plan, dtype: np.dtype, pad_value: object) -> np.ndarray:
    """A block's padded input rows as (rows, columns, channels): the input itself when it needs no
    padding or cast and its pixels are packed (the channels of one pixel, then the next), else a
    channels-innermost scratch copy (:func:`_fill_slab`)."""
    (sh, _), (ph, pw) = plan.stride, plan.padding
    top = block.r0 * sh - ph
    if (
        isinstance(x4, np.ndarray)
        and x4.dtype == dtype
        and x4.strides[1] == x4.itemsize
        and x4.strides[3] == x4.shape[1] * x4.itemsize
        and pw == 0
        and top >= 0
        and top + plan.span(0, block.r1 - block.r0) <= plan.in_size[0]
        and plan.taps_needed(1) <= plan.in_size[1]
    ):
        return x4[block.batch, :, top: top + plan.span(0, block.r1 - block.r0)].transpose(1, 2, 0)
    return _fill_slab(x4, block, plan, dtype, pad_value, channels_last=True).transpose(1, 2, 0)


# A column reduction ``reduce(a, stride, n_out, out)`` along axis 1 of ``a`` into ``out``.
ColumnReduce: TypeAlias = Callable[[np.ndarray, int, int, np.ndarray], object]
ColumnMethod: TypeAlias = Literal["whole", "pixels", "gather", "channels"]


def _column_method(kernel: int, stride: int, channels: int, itemsize: int, lanes: bool) -> ColumnMethod:
    """How :func:`_interleaved_columns` reduces the columns of interleaved rows.

    NumPy walks a strided view of (.., channels) pixels a few elements at a time, and a strided
    loop over one channel runs at about a third of a contiguous one's speed per element (no SIMD):

    - ``"whole"``: stride 1 (taps are contiguous shifted views) or many channels;
    - ``"pixels"``: a pixel of 2, 4 or 8 bytes is one unsigned integer whose lanes are the
      channels; with ``lanes`` (sums that cannot carry from one lane into the next) the strided
      taps add whole pixels, one element per pixel instead of one per channel;
    - ``"gather"``: windows at every column (contiguous taps, stride 1) into scratch, then every
      ``stride``-th pixel copied out: a contiguous pass over ``stride`` times the output and one
      strided copy beat ``kernel - 1`` strided passes when ``stride <= 2 * (kernel - 1)``
      (measured on 8-bit RGB, k2 s2: 1.25 ms against 1.5 ms for a 2048x2048 image);
    - ``"channels"``: each channel reduced on its own, in long strided loops.
    """
    if stride == 1 or channels >= _CHANNELS_LAST_MIN:
        return "whole"
    if lanes and channels * itemsize in (2, 4, 8):
        return "pixels"
    if kernel >= 2 and stride <= 2 * (kernel - 1):
        return "gather"
    return "channels"


def _pixel_view(a: np.ndarray) -> np.ndarray | None:
    """(rows, columns, channels) as (rows, columns) unsigned integers of one pixel each (a view),
    or None when a pixel is not 2, 4 or 8 packed, aligned bytes."""
    size = a.shape[2] * a.itemsize
    if size not in (2, 4, 8) or a.strides[2] != a.itemsize:
        return None
    pixels = a.view(np.dtype(f"u{size}"))[:, :, 0]
    return pixels if pixels.flags.aligned else None


def _interleaved_columns(rows: np.ndarray, reduce: ColumnReduce, kernel: int, stride: int, n_out: int,
                         out: np.ndarray, lanes: bool = False) -> None:
    """Reduce the columns of (rows, columns, channels) into ``out`` (rows, ``n_out``, channels),
    windows of ``kernel`` taps every ``stride`` columns, by :func:`_column_method`.  ``lanes``:
    ``reduce`` is a sum that never carries past one channel's value (unsigned sums that fit
    their dtype), so it may add whole pixels."""
    channels = rows.shape[2]
    method = _column_method(kernel, stride, channels, rows.itemsize, lanes)
    if method == "whole":
        reduce(rows, stride, n_out, out)
        return
    if method == "pixels":
        pixels, target = _pixel_view(rows), _pixel_view(out)
        if pixels is not None and target is not None:
            reduce(pixels, stride, n_out, target)
            return
        method = "channels"
    if method == "gather":
        every = _scratch((rows.shape[0], (n_out - 1) * stride + 1, channels), rows.dtype, "columns")
        reduce(rows, 1, every.shape[1], every)
        picked = every[:, ::stride]
        pixels, target = _pixel_view(picked), _pixel_view(out)
        if pixels is not None and target is not None:
            np.copyto(target, pixels)
            return
        for c in range(channels):
            np.copyto(out[:, :, c], picked[:, :, c])
        return
    for c in range(channels):
        reduce(rows[:, :, c], stride, n_out, out[:, :, c])


def _columns_by_channel(kernel: int, stride: int, channels: int, itemsize: int, lanes: bool = False) -> bool:
    """Does :func:`_interleaved_columns` write channel by channel?  Then planes are as cheap a
    destination as pixels, and planar output needs no copy from pixels."""
    method = _column_method(kernel, stride, channels, itemsize, lanes)
    return method == "channels" or (method == "gather" and channels * itemsize not in (2, 4, 8))


def _interleaved_rows(slab: np.ndarray, reduce: Callable[[np.ndarray, np.ndarray], np.ndarray],
                      kernel: int, stride: int, n_rows: int, dtype: np.dtype) -> np.ndarray:
    """The row pass of an interleaved block, ``reduce(slab, out)`` along axis 0: a view of the
    slab for one-row windows, else the windows reduced into this thread's scratch."""
    if kernel == 1:
        return slab[: (n_rows - 1) * stride + 1: stride]
    return reduce(slab, _scratch((n_rows,) + slab.shape[1:], dtype, "rows"))


def _taps(a: np.ndarray, axis: int, k: int, d: int, s: int, n_out: int) -> list[np.ndarray]:
    """Views of ``a`` along ``axis``: tap j of every window, for n_out windows."""
    views = []
    for j in range(k):
        index = [slice(None)] * a.ndim
        index[axis] = slice(j * d, j * d + (n_out - 1) * s + 1, s)
        views.append(a[tuple(index)])
    return views


def _slice_along(a: np.ndarray, axis: int, start: int, stop: int, step: int = 1) -> np.ndarray:
    """``a[..., start:stop:step, ...]`` with the slice on ``axis``: a view, no data moves."""
    index = [slice(None)] * a.ndim
    index[axis] = slice(start, stop, step)
    return a[tuple(index)]


def _window_max(a: np.ndarray, axis: int, k: int, d: int, s: int, n_out: int,
                out: np.ndarray | None = None) -> np.ndarray:
    """Max over each window of k taps (spacing d, windows every s) along one axis, into ``out``
    when given.

    Long stride-1 windows use doubling: max over 2m taps is the max of two maxes over m taps, so
    the pass count grows with log2(k) instead of k.  Overlapping halves are fine for a max.
    """
    if k == 1:
        first = _slice_along(a, axis, 0, (n_out - 1) * s + 1, s)
        return first.copy() if out is None else _copy_into(out, first)
    if s == 1 and k >= _DOUBLING_MIN_TAPS:
        # Only the taps of the n_out windows: the doubling passes run over the whole axis.
        span, m = 1, _slice_along(a, axis, 0, n_out + (k - 1) * d)
        while span * 2 <= k:
            length = m.shape[axis] - span * d
            final = span * 2 == k  # no remainder step follows
            m = np.maximum(_slice_along(m, axis, 0, length), _slice_along(m, axis, span * d, span * d + length),
                           out=out if final else None)
            span *= 2
        if span < k:
            shift = (k - span) * d
            length = m.shape[axis] - shift
            m = np.maximum(_slice_along(m, axis, 0, length), _slice_along(m, axis, shift, shift + length), out=out)
        return m
    views = _taps(a, axis, k, d, s, n_out)
    out = np.maximum(views[0], views[1], out=out)
    for view in views[2:]:
        np.maximum(out, view, out=out)
    return out


def _copy_into(out: np.ndarray, values: np.ndarray) -> np.ndarray:
    np.copyto(out, values, casting="unsafe")
    return out


def _window_sum(a: np.ndarray, axis: int, k: int, s: int, n_out: int, out: np.ndarray | None = None) -> np.ndarray:
    """Sum over each window of k consecutive taps along one axis (integer data: any order is
    exact), into ``out`` when given.

    Long stride-1 windows use binary decomposition: sums over 1, 2, 4, ... taps are built by
    doubling and the window is assembled from the powers of two in k.
    """
    if k == 1:
        first = _slice_along(a, axis, 0, (n_out - 1) * s + 1, s)
        return first.copy() if out is None else _copy_into(out, first)
    if s == 1 and k >= _DOUBLING_MIN_TAPS:
        powers = {1: a}
        span = 1
        while span * 2 <= k:
            prev = powers[span]
            length = prev.shape[axis] - span
            powers[span * 2] = _slice_along(prev, axis, 0, length) + _slice_along(prev, axis, span, span + length)
            span *= 2
        parts = []
        offset = 0
        for p in sorted(powers, reverse=True):
            if k - offset >= p:
                parts.append(_slice_along(powers[p], axis, offset, offset + n_out))
                offset += p
        if len(parts) == 1:
            return parts[0].copy() if out is None else _copy_into(out, parts[0])
        total = np.add(parts[0], parts[1], out=out)  # the first two parts in one pass, no copy
        for part in parts[2:]:
            np.add(total, part, out=total)
        return total
    views = _taps(a, axis, k, 1, s, n_out)
    out = np.add(views[0], views[1], out=out)
    for view in views[2:]:
        np.add(out, view, out=out)
    return out


def _lowest(dtype: np.dtype) -> object:
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min


def _stepped_starts(n_out: int, stride: int, pad: int, dilation: int) -> np.ndarray:
    """First tap of each window that is not in the left padding (torch: ``while h0 < 0: h0 += d``)."""
    start = np.arange(n_out, dtype=np.int64) * stride - pad
    behind = np.maximum(-start, 0)
    return start + (-(-behind // dilation)) * dilation


def _tap_valid(n_out: int, k: int, stride: int, pad: int, dilation: int, size: int) -> np.ndarray:
    """valid[j, o]: tap j of window o lies inside the input (not padding, not ceil overhang)."""
    pos = np.arange(n_out, dtype=np.int64)[None, :] * stride - pad + np.arange(k, dtype=np.int64)[:, None] * dilation
    return (pos >= 0) & (pos < size)


# --------------------------------------------------------------------------------------------
# max_pool2d (docs/semantics.md §4)
# --------------------------------------------------------------------------------------------


def _max_block_fast(slab: np.ndarray, plan: _Plan, n_rows: int) -> np.ndarray:
    (kh, kw), (sh, sw), (dh, dw) = plan.kernel, plan.stride, plan.dilation
    # Rows first: whole contiguous rows are selected, so this pass is SIMD-friendly and shrinks
    # the data by the row stride before the strided column pass.
    rows = _window_max(slab, 1, kh, dh, sh, n_rows)
    return _window_max(rows, 2, kw, dw, sw, plan.out_size[1])


def _max_block_exact(
    slab: np.ndarray, plan: _Plan, block: _Block, with_indices: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """torch's scan, separably: strict '>' (first maximum wins), NaN always takes over (last NaN).

    Padded taps never take part; an index starts at the window's first non-padding tap.
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = plan.kernel, plan.stride, plan.padding, plan.dilation
    height, width = plan.in_size
    out_w = plan.out_size[1]
    n_rows = block.r1 - block.r0
    is_float = slab.dtype.kind == "f"
    lowest = _lowest(slab.dtype)

    def takes(value: np.ndarray, best: np.ndarray) -> np.ndarray:
        return (value > best) | np.isnan(value) if is_float else value > best

    # Column pass on every slab row: best value and its input column, per output column.
    col_valid = _tap_valid(out_w, kw, sw, pw, dw, width)
    col_of_tap = np.arange(out_w, dtype=np.int64)[None, :] * sw - pw + np.arange(kw, dtype=np.int64)[:, None] * dw
    row_best = np.full(slab.shape[:2] + (out_w,), lowest, dtype=slab.dtype)
    row_col = np.broadcast_to(_stepped_starts(out_w, sw, pw, dw), row_best.shape).copy()
    for j, view in enumerate(_taps(slab, 2, kw, dw, sw, out_w)):
        take = takes(view, row_best) & col_valid[j]
        np.copyto(row_best, view, where=take)
        np.copyto(row_col, col_of_tap[j], where=take)

    # Row pass over those row results.
    out_rows = np.arange(block.r0, block.r1, dtype=np.int64)
    in_rows = out_rows[None, :] * sh - ph + np.arange(kh, dtype=np.int64)[:, None] * dh
    row_valid = (in_rows >= 0) & (in_rows < height)
    best = np.full((slab.shape[0], n_rows, out_w), lowest, dtype=slab.dtype)
    index = None
    if with_indices:
        first_row = _stepped_starts(plan.out_size[0], sh, ph, dh)[block.r0: block.r1]
        first_col = _stepped_starts(out_w, sw, pw, dw)
        index = np.broadcast_to(first_row[:, None] * width + first_col[None, :], best.shape).copy()
    best_views = _taps(row_best, 1, kh, dh, sh, n_rows)
    col_views = _taps(row_col, 1, kh, dh, sh, n_rows)
    for i in range(kh):
        take = takes(best_views[i], best) & row_valid[i][:, None]
        np.copyto(best, best_views[i], where=take)
        if index is not None:
            np.copyto(index, in_rows[i][:, None] * width + col_views[i], where=take)
    return best, index


def _needs_exact(values: np.ndarray, slab: np.ndarray) -> bool:
    """Could np.maximum differ from torch here?  Only for NaN payloads and signed-zero ties."""
    if np.isnan(values).any():
        return True
    if (values == 0).any():
        zeros = slab == 0
        return bool(np.signbit(slab, where=zeros, out=np.zeros(slab.shape, bool)).any())
    return False


@overload
def max_pool2d(
    x: ArrayOrRows,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    ceil_mode: bool = False,
    return_indices: Literal[False] = False,
) -> np.ndarray: ...


@overload
def max_pool2d(
    x: ArrayOrRows,
    kernel_size: IntOrPair,
    stride: IntOrPair | None,
    padding: IntOrPair,
    dilation: IntOrPair,
    ceil_mode: bool,
    return_indices: Literal[True],
) -> tuple[np.ndarray, np.ndarray]: ...


@overload
def max_pool2d(
    x: ArrayOrRows,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    ceil_mode: bool = False,
    *,
    return_indices: Literal[True],
) -> tuple[np.ndarray, np.ndarray]: ...


@overload
def max_pool2d(
    x: ArrayOrRows,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...


def max_pool2d(
    x: ArrayOrRows,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """2-D max pooling over the last two axes, equal to ``torch.nn.functional.max_pool2d`` (CPU).

    Parameters
    ----------
    x : numpy.ndarray or RowSource
        ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``; any integer dtype or float16/32/64, any
        memory layout.  Never modified.  2-D input is an extension (torch wants 3-D or 4-D).
    kernel_size, stride, padding, dilation : int or (int, int)
        As in torch; ``stride=None`` (or ``()``) means the kernel size.
    ceil_mode : bool
        Round the output size up; a last window that would start in the right padding is dropped.
    return_indices : bool
        Also return int64 indices ``h * W + w`` of each maximum inside its unpadded input plane.

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, numpy.ndarray)
        Values with the input's dtype and number of dimensions, and the indices if requested.

    Raises
    ------
    PoolingError
        A ``ValueError``, where torch raises a RuntimeError (same message text), e.g. an output
        size below 1.
    PoolingTypeError
        A ``TypeError``, for arguments of the wrong type and unsupported dtypes (bool, complex),
        as torch.

    Notes
    -----
    Ties go to the first maximum in row-major window order; any NaN makes the result NaN and its
    index the last NaN's.  Padding never wins: a window that sees no input (possible only with
    dilation) gives the dtype's lowest value, as in torch.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(9.0).reshape(1, 3, 3)
    >>> max_pool2d(x, 2, stride=1)
    array([[[4., 5.],
            [7., 8.]]])
    >>> values, indices = max_pool2d(x, 2, stride=1, return_indices=True)
    >>> indices.tolist()
    [[[4, 5], [7, 8]]]
    """
    return _max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def _empty_output(shape: tuple[int, ...], dtype: np.dtype, channels_last: bool) -> np.ndarray:
    """An (N, C, OH, OW) output: C-contiguous (the public functions' promise), or with
    ``channels_last`` a view of an (N, OH, OW, C) array, so that pooled pixels need no copy to
    become interleaved pixels again (:func:`pool_rows`)."""
    if not channels_last:
        return np.empty(shape, dtype=dtype)
    n, c, h, w = shape
    return np.empty((n, h, w, c), dtype=dtype).transpose(0, 3, 1, 2)


def _output_rows(plan: _Plan, output_rows: tuple[int, int] | None) -> tuple[int, int]:
    """The output rows to compute: all of them, or a range ``[o0, o1)`` (strips, see strips.py)."""
    if output_rows is None:
        return 0, plan.out_size[0]
    o0, o1 = (int(v) for v in output_rows)
    if not 0 <= o0 <= o1 <= plan.out_size[0]:
        raise ValueError(f"output_rows {output_rows} outside the {plan.out_size[0]} output rows")
    return o0, o1


def _max_pool(
    x: ArrayOrRows,
    kernel_size: IntOrPair,
    stride: IntOrPair | None,
    padding: IntOrPair,
    dilation: IntOrPair,
    ceil_mode: bool,
    return_indices: bool,
    *,
    output_rows: tuple[int, int] | None = None,
    channels_last: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """:func:`max_pool2d`, optionally only output rows ``[o0, o1)`` (the same blocks compute them),
    optionally with the values laid out channels-innermost (:func:`_empty_output`)."""
    x = _as_array(x)
    plan = _validate("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    _check_dtype("max_pool2d", x)
    o0, o1 = _output_rows(plan, output_rows)
    x4 = _as_4d(x)
    out_shape = x4.shape[:2] + (o1 - o0, plan.out_size[1])
    values = _empty_output(out_shape, x.dtype, channels_last)
    indices = np.empty(out_shape, dtype=np.int64) if return_indices else None
    lowest = _lowest(x.dtype)
    is_float = x.dtype.kind == "f"
    interleaved = indices is None and _is_interleaved(x4)
    (kh, kw), (sh, sw), (dh, dw) = plan.kernel, plan.stride, plan.dilation
    out_w = plan.out_size[1]

    def work(block: _Block) -> None:
        target = (block.batch, slice(block.c0, block.c1), slice(block.r0 - o0, block.r1 - o0))
        if interleaved:
            n_rows = block.r1 - block.r0
            slab = _interleaved_slab(x4, block, plan, x.dtype, lowest)
            rows = _interleaved_rows(slab, lambda a, out: _window_max(a, 0, kh, dh, sh, n_rows, out), kh, sh,
                                     n_rows, x.dtype)
            direct = channels_last or _columns_by_channel(kw, sw, x4.shape[1], x.dtype.itemsize)
            if direct:
                dest = values[target].transpose(1, 2, 0)
            else:
                dest = _scratch((n_rows, out_w, x4.shape[1]), x.dtype, "out")
            _interleaved_columns(rows, lambda a, s, n, out: _window_max(a, 1, kw, dw, s, n, out), kw, sw, out_w, dest)
            if not direct:
                values[target] = dest.transpose(2, 0, 1)  # planes, as the public functions promise
            return
        slab = _slab(x4, block, plan, x.dtype, lowest)
        if indices is not None:
            best, index = _max_block_exact(slab, plan, block, with_indices=True)
            assert index is not None  # with_indices=True
            values[target] = best
            indices[target] = index
            return
        best = _max_block_fast(slab, plan, block.r1 - block.r0)
        if is_float and _needs_exact(best, slab):
            best, _ = _max_block_exact(slab, plan, block, with_indices=False)
        values[target] = best

    if values.size:
        if interleaved:
            blocks = _interleaved_blocks(x4, plan, x.dtype.itemsize, (o0, o1))
        else:
            blocks = _blocks(x4, plan, _is_channels_last(x4), x.dtype.itemsize, (o0, o1))
        _run(blocks, work, x4.size)
    shape = x.shape[:-2] + (o1 - o0, plan.out_size[1])
    values = values.reshape(shape)
    if indices is not None:
        return values, indices.reshape(shape)
    return values


# --------------------------------------------------------------------------------------------
# avg_pool2d (docs/semantics.md §3)
# --------------------------------------------------------------------------------------------


def axis_divisors(
    n_out: int, kernel: int, stride: int, padding: int, size: int, count_include_pad: bool
) -> np.ndarray:
    """Per-axis factors of avg_pool2d's divisors (docs/semantics.md §3).

    The divisor of output cell ``(i, j)`` is ``rows[i] * cols[j]`` (unless ``divisor_override``
    replaces it).  Each factor is the window's length along the axis, with its end clipped to the
    padded extent ``size + padding`` (so ceil-mode overhang past the right padding never counts),
    then, without ``count_include_pad``, clipped to the real input ``[0, size)`` too.

    Parameters
    ----------
    n_out : int
        Output length along the axis (see :func:`output_size`).
    kernel, stride, padding : int
        The axis's pooling parameters (avg_pool2d has no dilation).
    size : int
        Input length along the axis.
    count_include_pad : bool
        Count padding cells (as torch's default does).

    Returns
    -------
    numpy.ndarray
        int64 factors, one per output position.

    Examples
    --------
    A 3-long axis, k2 s2 in ceil mode (T4 of docs/semantics.md): the second window overhangs.

    >>> axis_divisors(2, 2, 2, 0, 3, True).tolist()
    [2, 1]
    >>> axis_divisors(3, 3, 1, 1, 3, True).tolist(), axis_divisors(3, 3, 1, 1, 3, False).tolist()
    ([3, 3, 3], [2, 3, 2])
    """
    start = np.arange(n_out, dtype=np.int64) * stride - padding
    end = np.minimum(start + kernel, size + padding)  # ceil-mode overhang past the right padding is cut
    if count_include_pad:
        return end - start
    return np.minimum(end, size) - np.maximum(start, 0)



def _avg_block_sums(slab: np.ndarray, plan: _Plan, n_rows: int) -> np.ndarray:
    (kh, kw), (sh, sw) = plan.kernel, plan.stride
    out_w = plan.out_size[1]
    if slab.dtype.kind in "iu":
        rows = _window_sum(slab, 1, kh, sh, n_rows)
        return _window_sum(rows, 2, kw, sw, out_w)
    # Floats: torch's exact order, rows outer, columns inner, one vectorised pass per tap.
    # (torch starts from +0.0; the sign of a zero sum is irrelevant, see _finish_truncated.)
    if sw > 1 and kw > 1 and slab.strides[2] == slab.itemsize:
        columns = _column_phases(slab, kw, sw, out_w)
        views = [_slice_along(tap, 1, i, i + (n_rows - 1) * sh + 1, sh) for i in range(kh) for tap in columns]
    else:
        views = [tap for row in _taps(slab, 1, kh, 1, sh, n_rows) for tap in _taps(row, 2, kw, 1, sw, out_w)]
    if len(views) == 1:
        return views[0] + slab.dtype.type(0)
    acc = np.add(views[0], views[1])
    for view in views[2:]:
        np.add(acc, view, out=acc)
    return acc


def _column_phases(slab: np.ndarray, k: int, s: int, n_out: int) -> list[np.ndarray]:
    """Views of the k column taps (windows every s columns) of a (C, rows, columns) slab, every
    one contiguous: tap j is phase ``j % s`` (columns ``j % s``, ``j % s + s``, ...), copied once
    into this thread's scratch, from column ``j // s``.  One strided copy per block instead of
    k * kh strided reads; the taps and their order are unchanged."""
    phases: dict[int, np.ndarray] = {}
    views = []
    for j in range(k):
        phase, offset = j % s, j // s
        if phase not in phases:
            length = (k - 1 - phase) // s + n_out  # the columns this phase's taps reach
            copy = _scratch(slab.shape[:2] + (length,), slab.dtype, f"phase {phase}")
            np.copyto(copy, slab[:, :, phase::s][:, :, :length])
            phases[phase] = copy
        views.append(phases[phase][:, :, offset: offset + n_out])
    return views


def _runs(values: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of equal values: ``[1, 2, 2, 1]`` → ``[(0, 1, 1), (1, 3, 2), (3, 4, 1)]``."""
    edges = np.flatnonzero(np.diff(values)) + 1
    starts = [0, *edges.tolist()]
    ends = [*edges.tolist(), len(values)]
    return [(lo, hi, int(values[lo])) for lo, hi in zip(starts, ends, strict=True)]


def _accumulator(dtype: np.dtype, window: int) -> np.dtype:
    """Accumulation type: f32 for f16/f32, f64 for f64; for integers the narrowest type that
    holds every window sum exactly, so results equal an int64 computation."""
    if dtype.kind == "f":
        return np.dtype(np.float64) if dtype.itemsize == 8 else np.dtype(np.float32)
    info = np.iinfo(dtype)
    if info.min >= 0 and info.max * window <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)  # 8-bit images with windows up to 257 taps: twice the SIMD lanes
    if max(-int(info.min), int(info.max)) * window < 2**31 and dtype.itemsize <= 2:
        return np.dtype(np.int32)
    return np.dtype(np.int64)


# The smallest and largest window sum integer input can give (None for floats): what decides
# whether a finisher may divide the sums as integers.
SumRange: TypeAlias = tuple[int, int] | None


def _sum_range(dtype: np.dtype, window: int) -> SumRange:
    if dtype.kind not in "iu":
        return None
    info = np.iinfo(dtype)
    return int(info.min) * window, int(info.max) * window


def _integer_divisor(sums: np.ndarray, divisor: np.ndarray, sum_range: SumRange, rounding: bool) -> int | None:
    """The divisor when NumPy's integer division by a scalar (SIMD, a multiply-shift by the
    divisor's reciprocal) gives the exact quotient: non-negative sums, a positive scalar divisor
    that fits the accumulator, and, when rounding, room to add half the divisor first."""
    if sum_range is None or divisor.ndim != 0 or sums.dtype.kind not in "iu":
        return None
    value, (low, high) = int(divisor), sum_range
    limit = int(np.iinfo(sums.dtype).max)
    if value <= 0 or low < 0 or value > limit or high + (value // 2 if rounding else 0) > limit:
        return None
    return value


def _power_of_two_shift(sums: np.ndarray, divisor: np.ndarray) -> int | None:
    """log2 of the divisor when it is one positive power of two and the sums are unsigned (so
    shifting them is exact floor division), else None."""
    if sums.dtype.kind != "u" or divisor.ndim != 0:
        return None
    value = int(divisor)
    return value.bit_length() - 1 if value > 0 and value & (value - 1) == 0 else None


def _shift_into(sums: np.ndarray, shift: int, out: np.ndarray) -> None:
    """``out[...] = sums >> shift`` (``sums`` is scratch, overwritten): a shift in place then one
    cast, both unbuffered loops; a shift that casts into ``out`` runs buffered, slower."""
    np.right_shift(sums, sums.dtype.type(shift), out=sums)
    np.copyto(out, sums, casting="unsafe")


def _finish_truncated(sums: np.ndarray, divisor: np.ndarray, out: np.ndarray, sum_range: SumRange = None) -> None:
    """torch's average from window sums into ``out``: one division; integers truncate toward zero.

    ``sum_range`` bounds the sums (:func:`_sum_range`); it lets non-negative sums divide as integers.
    """
    shift = _power_of_two_shift(sums, divisor)
    integer_divisor = _integer_divisor(sums, divisor, sum_range, rounding=False)
    if shift is not None:  # 8-bit k2, k4 windows: a shift is the exact quotient
        _shift_into(sums, shift, out)
    elif integer_divisor is not None:
        # Non-negative: floor is truncation.  Quotients past the output's range wrap in the
        # unsafe cast exactly as through int64 (both keep the low bits).
        np.floor_divide(sums, sums.dtype.type(integer_divisor), out=out, casting="unsafe")
    elif out.dtype.kind == "f":
        # torch adds the quotient into a zeroed output of the output dtype (out = 0; out += q):
        # -0.0, also from float16 underflow, becomes +0.0.
        np.divide(sums, divisor.astype(sums.dtype), out=sums)
        if out.dtype == sums.dtype:
            np.add(sums, sums.dtype.type(0), out=out)  # one pass: add and store
        else:
            out[...] = sums  # rounds float32 quotients to float16 (nearest even) first
            out += out.dtype.type(0)
    elif sums.dtype != np.int64:
        # |sum| < 2**31: the float64 quotient is close enough to truncate to the exact integer.
        quotient = np.trunc(sums / divisor)
        out[...] = quotient.astype(np.int64) if _may_wrap(quotient, out.dtype) else quotient
    else:
        quotient = np.floor_divide(sums, divisor)
        remainder = sums - quotient * divisor
        quotient += (remainder != 0) & ((sums < 0) != (divisor < 0))  # C++ division truncates
        out[...] = quotient


def _finish_rounded(sums: np.ndarray, divisor: np.ndarray, out: np.ndarray, sum_range: SumRange = None) -> None:
    """Exact average rounded to nearest, halves up, into ``out``: floor((2*sum + d) / (2*d)).

    ``sum_range`` bounds the sums (:func:`_sum_range`); it lets non-negative sums divide as integers.
    """
    shift = _power_of_two_shift(sums, divisor)
    integer_divisor = _integer_divisor(sums, divisor, sum_range, rounding=True)
    if out.dtype.kind == "f":
        _finish_truncated(sums, divisor, out)
    elif integer_divisor is not None:
        # floor((2s + d) / 2d) == (s + d // 2) // d for s >= 0, d > 0 (odd d: the fractions
        # (r + 1/2) / d never reach 1), and s + d // 2 fits the accumulator (checked).
        np.add(sums, sums.dtype.type(integer_divisor // 2), out=sums)
        if shift is not None:
            _shift_into(sums, shift, out)
        else:
            np.floor_divide(sums, sums.dtype.type(integer_divisor), out=out, casting="unsafe")
    elif shift is not None:
        # floor(s / 2^m + 1/2) is s >> m plus bit m-1 of s (the half): rounds halves up with no
        # intermediate that could overflow the accumulator.
        if shift:
            half = np.right_shift(sums, sums.dtype.type(shift - 1)) & sums.dtype.type(1)
            np.right_shift(sums, sums.dtype.type(shift), out=sums)
            sums += half
        out[...] = sums
    elif sums.dtype != np.int64:
        # Numerator and denominator are exact in float64 and far from 2**53: one correctly
        # rounded division, and floor() lands on the exact integer.
        quotient = np.floor((2 * sums.astype(np.float64) + divisor) / (2 * divisor))
        out[...] = quotient.astype(np.int64) if _may_wrap(quotient, out.dtype) else quotient
    else:
        out[...] = rounded_quotient(sums, divisor)


def rounded_quotient(numerator: np.ndarray, denominator: np.ndarray | int) -> np.ndarray:
    """Integer ``numerator / denominator`` rounded to nearest, halves up (toward +inf), exactly.

    Floor division plus a remainder test: no ``2 * numerator`` that could overflow int64.

    Examples
    --------
    >>> import numpy as np
    >>> rounded_quotient(np.array([5, 6, 7, -6]), 4).tolist()
    [1, 2, 2, -1]
    """
    denominator = np.asarray(denominator)
    quotient, remainder = np.divmod(numerator, denominator)
    return quotient + np.where(denominator > 0, 2 * remainder >= denominator, 2 * remainder <= denominator)


def _may_wrap(values: np.ndarray, dtype: np.dtype) -> bool:
    """Would casting these integral floats to ``dtype`` leave its range?  Then go through int64,
    which wraps like torch's conversions (a float-to-int cast out of range is undefined)."""
    info = np.iinfo(dtype)
    return bool(values.size) and (values.min() < info.min or values.max() > info.max)


def _avg_pool(
    x: ArrayOrRows,
    kernel_size: IntOrPair,
    stride: IntOrPair | None,
    padding: IntOrPair,
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: int | None,
    finish: Callable[[np.ndarray, np.ndarray, np.ndarray, SumRange], None],
    *,
    output_rows: tuple[int, int] | None = None,
    channels_last: bool = False,
) -> np.ndarray:
    """Validate as torch's avg_pool2d, sum every window, and let ``finish`` divide; optionally
    only output rows ``[o0, o1)`` (the same blocks compute them), optionally laid out
    channels-innermost (:func:`_empty_output`)."""
    x = _as_array(x)
    plan = _validate("avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode, divisor_override)
    _check_bool("avg_pool2d", "count_include_pad", None, count_include_pad)
    _check_dtype("avg_pool2d", x)
    o0, o1 = _output_rows(plan, output_rows)
    (kh, kw), (sh, sw), (ph, pw) = plan.kernel, plan.stride, plan.padding
    acc_dtype = _accumulator(x.dtype, kh * kw)
    x4 = _as_4d(x)
    out = _empty_output(x4.shape[:2] + (o1 - o0, plan.out_size[1]), x.dtype, channels_last)
    height, width = plan.in_size
    if divisor_override is not None:
        row_factors = np.ones(plan.out_size[0], dtype=np.int64)
        col_factors = np.full(plan.out_size[1], int(divisor_override), dtype=np.int64)
    else:
        row_factors = axis_divisors(plan.out_size[0], kh, sh, ph, height, count_include_pad)
        col_factors = axis_divisors(plan.out_size[1], kw, sw, pw, width, count_include_pad)
    # Divisors are products of per-axis factors that change only near the edges (padding, ceil
    # overhang): each block is divided in a few rectangles of one divisor each, by a scalar.
    row_runs, col_runs = _runs(row_factors), _runs(col_factors)
    sum_range = _sum_range(x.dtype, kh * kw)
    interleaved = _is_interleaved(x4)
    out_w = plan.out_size[1]

    def divide(sums: np.ndarray, divisor: int, target: np.ndarray) -> None:
        finish(sums, np.asarray(divisor, dtype=np.int64), target, sum_range)

    def work(block: _Block) -> None:
        target = out[block.batch, block.c0: block.c1, block.r0 - o0: block.r1 - o0]
        n_rows = block.r1 - block.r0
        dest = target
        if interleaved:
            slab = _interleaved_slab(x4, block, plan, acc_dtype, 0)
            rows = _interleaved_rows(slab, lambda a, out: _window_sum(a, 0, kh, sh, n_rows, out), kh, sh,
                                     n_rows, acc_dtype)
            channels = x4.shape[1]
            lanes = acc_dtype.kind == "u"  # unsigned sums that fit: whole pixels may be added
            planar = not channels_last and _columns_by_channel(kw, sw, channels, acc_dtype.itemsize, lanes)
            if planar:
                sums = _scratch((channels, n_rows, out_w), acc_dtype, "sums")
            else:
                sums = _scratch((n_rows, out_w, channels), acc_dtype, "sums").transpose(2, 0, 1)
            _interleaved_columns(rows, lambda a, s, n, out: _window_sum(a, 1, kw, s, n, out), kw, sw, out_w,
                                 sums.transpose(1, 2, 0), lanes)
            if not (channels_last or planar):  # divide pixels into pixels, then turn them into planes
                dest = _scratch((n_rows, out_w, channels), out.dtype, "out").transpose(2, 0, 1)
        else:
            sums = _avg_block_sums(_slab(x4, block, plan, acc_dtype, 0), plan, n_rows)
        for run_lo, run_hi, row_factor in row_runs:
            r_lo, r_hi = max(run_lo, block.r0) - block.r0, min(run_hi, block.r1) - block.r0
            if r_hi <= r_lo:
                continue
            for c_lo, c_hi, col_factor in col_runs:
                divide(sums[:, r_lo:r_hi, c_lo:c_hi], row_factor * col_factor, dest[:, r_lo:r_hi, c_lo:c_hi])
        if dest is not target:
            target[...] = dest

    if out.size:
        if interleaved:
            blocks = _interleaved_blocks(x4, plan, acc_dtype.itemsize, (o0, o1))
        else:
            blocks = _blocks(x4, plan, _is_channels_last(x4), acc_dtype.itemsize, (o0, o1))
        _run(blocks, work, x4.size)
    return out.reshape(x.shape[:-2] + (o1 - o0, plan.out_size[1]))


def avg_pool2d_rounded(
    x: ArrayOrRows,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> np.ndarray:
    """:func:`avg_pool2d` with integer averages rounded to nearest, halves up, not truncated.

    The windows, divisors and validation are torch's; only the final integer division rounds
    (as Pillow's ``Image.reduce`` and OpenCV's INTER_AREA do), which is what pixels want.
    Float input gives exactly :func:`avg_pool2d`.

    Examples
    --------
    >>> import numpy as np
    >>> avg_pool2d_rounded(np.array([[1, 2], [3, 4]], dtype=np.uint8), 2).tolist()
    [[3]]
    >>> avg_pool2d(np.array([[1, 2], [3, 4]], dtype=np.uint8), 2).tolist()
    [[2]]
    """
    return _avg_pool(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                     _finish_rounded)


def avg_pool2d(
    x: ArrayOrRows,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> np.ndarray:
    """2-D average pooling over the last two axes, equal to ``torch.nn.functional.avg_pool2d`` (CPU).

    Parameters
    ----------
    x : numpy.ndarray or RowSource
        ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``, any memory layout; never modified.
        2-D input is an extension (torch wants 3-D or 4-D).
    kernel_size, stride, padding : int or (int, int)
        As in torch; ``stride=None`` (or ``()``) means the kernel size.
    ceil_mode : bool
        Round the output size up; a last window that would start in the right padding is dropped.
    count_include_pad : bool
        Count padding cells in the divisor (ceil-mode overhang past the padding never counts).
    divisor_override : int, optional
        Divide every window sum by this non-zero integer instead (negative allowed).

    Returns
    -------
    numpy.ndarray
        Averages with the input's dtype and number of dimensions.

    Raises
    ------
    PoolingError
        A ``ValueError``, where torch raises a RuntimeError or IndexError (same message text).
    PoolingTypeError
        A ``TypeError``, for arguments of the wrong type and unsupported dtypes (bool, complex),
        as torch.

    Notes
    -----
    float32 and float16 sum in float32, float64 in float64, in torch's row-major order from +0.0,
    then divide once: results are bit-identical to torch.  int64 sums exactly and divides
    truncating toward zero, like torch.  Other integer dtypes (which torch rejects) are an
    extension: they behave exactly as if converted to int64, pooled, and converted back.

    Examples
    --------
    >>> import numpy as np
    >>> avg_pool2d(np.arange(9.0).reshape(1, 3, 3), 2, stride=1)
    array([[[2., 3.],
            [5., 6.]]])
    >>> avg_pool2d(np.array([[[-3, 0, 3, 0]]]), (1, 2))  # int64 truncates toward zero
    array([[[-1,  1]]])
    """
    return _avg_pool(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                     _finish_truncated)


def pool_rows(
    op: RowsOp, x: np.ndarray | RowSource, output_rows: tuple[int, int] | None = None, *,
    kernel_size: IntOrPair, stride: IntOrPair | None = None, padding: IntOrPair = 0, dilation: IntOrPair = 1,
    ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: int | None = None,
    channels_last: bool = False,
) -> np.ndarray:
    """Only output rows ``[o0, o1)`` of a pooling call (internal: the strip machinery's entry).

    ``op`` is ``"max"`` (:func:`max_pool2d`), ``"avg"`` (:func:`avg_pool2d`) or ``"avg_rounded"``
    (:func:`avg_pool2d_rounded`), with torch's keyword arguments (``dilation`` for max only;
    ``count_include_pad`` and ``divisor_override`` for the averages only).  The rows are
    computed by the same blocks as the whole call, so concatenating the strips of any cut gives
    exactly (bit for bit) the whole result.  Validation and output size use the full input.
    With ``channels_last`` the (C, OH, OW) result is a view of an (OH, OW, C) array (the same
    values): pixels come back interleaved, without a copy from planes.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(36.0).reshape(1, 6, 6)
    >>> top = pool_rows("max", x, (0, 1), kernel_size=3, stride=2, padding=1)
    >>> rest = pool_rows("max", x, (1, 3), kernel_size=3, stride=2, padding=1)
    >>> bool((np.concatenate([top, rest], axis=1) == max_pool2d(x, 3, 2, 1)).all())
    True
    """
    if op == "max":
        if count_include_pad is not True or divisor_override is not None:
            raise TypeError("max pooling takes neither count_include_pad nor divisor_override")
        values = _max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, False, output_rows=output_rows,
                           channels_last=channels_last)
        assert isinstance(values, np.ndarray)  # no indices asked for
        return values
    if dilation not in (1, (1, 1)):
        raise TypeError("average pooling takes no dilation")
    finish = {"avg": _finish_truncated, "avg_rounded": _finish_rounded}[op]
    return _avg_pool(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, finish,
                     output_rows=output_rows, channels_last=channels_last)
