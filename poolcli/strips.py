"""Pooling a large image strip by strip: bounded memory, results bit-identical to the whole call.

A *reader* is anything with ``shape`` (C, H, W), ``dtype`` and ``read(top, bottom)`` returning
input rows ``top:bottom`` as a (C, bottom - top, W) array (any strides): a tifffile/zarr-backed
reader from :mod:`poolcli.chunked` or :mod:`poolcli.tiff_io`, or :class:`ArrayReader` around an array.

The output is cut into strips of whole output rows.  For each strip, the input rows its windows
touch (with the halo that kernel, dilation and padding need) are read, and the engine computes
only those output rows (:func:`poolcli.engine.pool_rows`) with the full image's geometry: padding,
ceil-mode overhang and divisors are those of the whole image, so the strips concatenate to exactly
the whole result, for every parameter.

For a cluster (Dask), :func:`pool_output_rows` is the whole contract: a task that knows the reader
and an output row range computes that range alone; :func:`input_rows` says which input rows (hence
which input chunks) it needs.  Who runs the strips is a :class:`StripRunner`: :data:`LOCAL` runs
them here, in order; the Dask executor submits them as tasks (:mod:`poolcli.cluster`).

May import: NumPy, ``engine``, ``pixels``, ``nodata`` and ``params``; no file formats (readers come in).

Examples
--------
>>> import numpy as np
>>> from poolcli.params import DEFAULT_MEMORY_LIMIT, PoolParams
>>> x = np.arange(2 * 9 * 7, dtype=np.uint8).reshape(2, 9, 7)
>>> rule = Rule(PoolParams("avg", (3, 3), (2, 2), (1, 1), ceil_mode=True))
>>> parts = [strip for _, _, strip in iter_strips(ArrayReader(x), rule, memory_limit=1)]
>>> len(parts), bool((np.concatenate(parts, axis=1) == rule.pool(x)).all())
(5, True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from poolcli import engine, pixels
from poolcli.params import DEFAULT_MEMORY_LIMIT, PoolParams

# Memory the engine's thread scratch slabs, the codecs' buffers and the writer's pending tiles may
# use beside the strips themselves.
_RESERVE = 48 << 20


# A reader is the engine's one row protocol: ``shape`` (C, H, W), ``dtype``, ``read(top, bottom)``.
Reader = engine.Rows


class ArrayReader:
    """A (C, H, W) or (H, W) array (or a (H, W, C) one with ``channels_last``) as a reader.

    Examples
    --------
    >>> ArrayReader(np.zeros((4, 5, 3)), channels_last=True).shape
    (3, 4, 5)
    """

    def __init__(self, array: np.ndarray, channels_last: bool = False):
        if array.ndim == 2:
            array = array[None]
        elif channels_last:
            array = array.transpose(2, 0, 1)
        self.array = array
        self.shape: tuple[int, int, int] = tuple(array.shape)
        self.dtype = array.dtype

    def read(self, top: int, bottom: int) -> np.ndarray:
        return self.array[:, top:bottom]


T = TypeVar("T")

# How a long job tells its user how far it is: ``progress(task, done, total)`` after each unit
# (a strip, a row of tiles); the caller draws it (poolcli.report), the streaming code never does.
Progress = Callable[[str, int, int], None]


def counted(pieces: Iterable[T], progress: Progress | None, task: str, total: int, start: int = 0) -> Iterator[T]:
    """``pieces`` passed on, ``progress(task, done, total)`` told as each is ready.

    Examples
    --------
    >>> seen = []
    >>> list(counted("ab", lambda task, done, total: seen.append((task, done, total)), "strips", 2))
    ['a', 'b']
    >>> seen
    [('strips', 1, 2), ('strips', 2, 2)]
    """
    for done, piece in enumerate(pieces, start + 1):
        if progress is not None:
            progress(task, done, total)
        yield piece


class StripRunner(Protocol):
    """Runs ``task(o0, o1)`` for each output row range and gives the results back in order."""

    def map(self, task: Callable[[int, int], T], ranges: Sequence[tuple[int, int]]) -> Iterator[T]: ...


class LocalRunner:
    """Strips in this process, one after the other, each only when its result is asked for.

    Examples
    --------
    >>> list(LocalRunner().map(lambda o0, o1: o1 - o0, [(0, 2), (2, 5)]))
    [2, 3]
    """

    def map(self, task: Callable[[int, int], T], ranges: Sequence[tuple[int, int]]) -> Iterator[T]:
        for o0, o1 in ranges:
            yield task(o0, o1)


LOCAL: StripRunner = LocalRunner()


@dataclass(frozen=True)
class Rule:
    """How values are pooled: ``pixels=False`` is torch's semantics (arrays); ``pixels=True`` the
    pixel rules of :mod:`poolcli.pixels` (rounded integer averages, alpha, linear light); a
    ``nodata`` value: :mod:`poolcli.nodata`'s rule (docs/semantics.md §10.1), which leaves that
    value out of every window, for arrays and pixels alike."""

    params: PoolParams
    pixels: bool = False
    has_alpha: bool = False
    premultiply: bool = True
    linear: bool = False
    nodata: int | float | None = None

    def pool(self, planes: np.ndarray | engine.RowSource, output_rows: tuple[int, int] | None = None) -> np.ndarray:
        """Pool (C, H, W) planes; only output rows ``[o0, o1)`` with ``output_rows``."""
        if self.nodata is not None:
            from poolcli import nodata

            pool = nodata.avg_pool if self.params.spec.averages else nodata.max_pool
            return pool(planes, self.params, self.nodata, output_rows)
        if self.pixels:
            return pixels.pool_pixel_planes(planes, self.params, has_alpha=self.has_alpha,
                                            premultiply=self.premultiply, linear=self.linear,
                                            output_rows=output_rows)
        return engine.pool_rows(self.params.op, planes, output_rows, **self.params.engine_args())


_MEMORY_TUNED = False


def reuse_freed_memory() -> None:
    """Let glibc keep freed strips for the next ones instead of handing them back to the system
    and faulting fresh zeroed pages in again (the ``MALLOC_*`` settings, set once, here): a
    16384² 4-channel uint16 pyramid spent 5.5 s of system time on those faults, 2.8 s after.
    The peak stays that of the strips; elsewhere than glibc, nothing changes."""
    global _MEMORY_TUNED
    if _MEMORY_TUNED:
        return
    _MEMORY_TUNED = True
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: its largest value, and no longer adjusted by glibc
    mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    mallopt(-2, 64 << 20)  # M_TOP_PAD


def output_shape(shape: tuple[int, int, int], params: PoolParams) -> tuple[int, int, int]:
    """(C, OH, OW) of pooling a (C, H, W) input; raises the engine's (torch's) ValueError when the
    parameters do not fit the input.

    Examples
    --------
    >>> output_shape((3, 10, 7), PoolParams("max", (2, 2)))
    (3, 5, 3)
    """
    probe = engine.RowSource(shape, np.dtype(np.float32), lambda top, bottom: np.zeros((shape[0], 0, shape[2])))
    args = params.engine_args()
    engine.pool_rows(params.op, probe, (0, 0), **args)  # validates with torch's rules, computes nothing
    out_h, out_w = engine.output_size(shape[1:], **{k: args[k] for k in ("kernel_size", "stride", "padding")},
                                      dilation=params.effective_dilation,
                                      ceil_mode=params.ceil_mode)
    return shape[0], out_h, out_w


def input_rows(params: PoolParams, height: int, o0: int, o1: int) -> tuple[int, int]:
    """Input rows ``[top, bottom)`` that output rows ``[o0, o1)`` read (halo included, padding and
    ceil overhang clipped away).

    Examples
    --------
    >>> input_rows(PoolParams("max", (3, 3), (2, 2), (1, 1)), 10, 1, 3)
    (1, 6)
    """
    if o1 <= o0:
        return 0, 0
    (sh, _), (ph, _) = params.effective_stride, params.padding
    dh = params.effective_dilation[0]
    top = o0 * sh - ph
    bottom = (o1 - 1) * sh - ph + dh * (params.kernel[0] - 1) + 1
    return max(top, 0), min(max(bottom, 0), height)


def pool_output_rows(reader: Reader, rule: Rule, o0: int, o1: int) -> np.ndarray:
    """Output rows ``[o0, o1)`` of pooling the reader's whole (C, H, W) image: (C, o1 - o0, OW).

    Reads only the input rows those outputs need (:func:`input_rows`), once.  Any cut of the
    output rows into ranges concatenates to exactly the whole result; a Dask task per output
    chunk-row may call this on a worker with a reader of the input store.

    Parameters
    ----------
    reader : Reader
        The input: ``shape`` (C, H, W), ``dtype``, ``read(top, bottom)``.
    rule : Rule
        Parameters and semantics (arrays or pixels).
    o0, o1 : int
        The output rows, ``0 <= o0 <= o1 <= OH``.

    Returns
    -------
    numpy.ndarray
        The rows, with the input's dtype.

    Examples
    --------
    >>> x = np.arange(30.0).reshape(1, 5, 6)
    >>> pool_output_rows(ArrayReader(x), Rule(PoolParams("max", (2, 2), (1, 1))), 2, 4).tolist()
    [[[19.0, 20.0, 21.0, 22.0, 23.0], [25.0, 26.0, 27.0, 28.0, 29.0]]]
    """
    top, bottom = input_rows(rule.params, reader.shape[1], o0, o1)
    data = reader.read(top, bottom)
    window = engine.RowSource(reader.shape, reader.dtype, lambda t, b: data[:, t - top: b - top])
    return rule.pool(window, (o0, o1))


def row_bytes(shape: tuple[int, int, int], dtype: np.dtype, params: PoolParams) -> int:
    """Working bytes per output row of a strip: its input rows (read, and a decoder's copy) and
    the output row (pooled, and a writer's copy)."""
    channels, _, width = shape
    out_w = output_shape(shape, params)[2] if width else 0
    itemsize = np.dtype(dtype).itemsize
    return 2 * channels * itemsize * (params.effective_stride[0] * width + out_w)


def strip_height(shape: tuple[int, int, int], dtype: np.dtype, params: PoolParams, memory_limit: int,
                 align: int = 1) -> int:
    """Output rows per strip so that a strip's working memory stays within ``memory_limit``:
    a multiple of ``align`` (an output chunk or tile height) when the limit allows one, else
    fewer rows (at least one): writers then assemble chunks from several strips.

    Examples
    --------
    >>> strip_height((3, 40000, 40000), np.dtype(np.uint8), PoolParams("max", (2, 2)), 256 << 20, align=256)
    256
    """
    per_row = max(1, row_bytes(shape, dtype, params))
    dh = params.effective_dilation[0]
    halo = dh * (params.kernel[0] - 1) * shape[0] * shape[2] * np.dtype(dtype).itemsize
    rows = max(1, (memory_limit - _RESERVE - halo) // per_row)
    return rows // align * align if rows >= align else rows


def task_height(params: PoolParams, align: int, chunk_rows: int, most: int) -> int:
    """Output rows of one strip task on a cluster: the fewest whole output chunk rows (``align``)
    whose input rows are whole input chunk rows (``chunk_rows``), so that no two tasks decode the
    same input chunks (a task reading half a chunk row decodes it all, on another worker than
    the other half's); ``align`` when that would be more than ``most`` rows (what the memory
    limit allows: :func:`strip_height`), or when padding shifts the input rows off the chunks.

    Examples
    --------
    >>> task_height(PoolParams("max", (2, 2)), 256, 1024, 1000)
    512
    >>> task_height(PoolParams("max", (2, 2)), 256, 1000, 1000), task_height(PoolParams("max", (2, 2)), 256, 128, 10)
    (256, 256)
    """
    import math

    stride, pad = params.effective_stride[0], params.padding[0]
    height = math.lcm(align, chunk_rows // math.gcd(chunk_rows, stride))
    return height if height <= most and pad == 0 else align


def plan_strips(out_height: int, height: int) -> list[tuple[int, int]]:
    """Output row ranges of ``height`` rows covering ``out_height`` rows.

    Examples
    --------
    >>> plan_strips(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    return [(o0, min(out_height, o0 + height)) for o0 in range(0, out_height, height)]


def iter_strips(reader: Reader, rule: Rule, memory_limit: int = DEFAULT_MEMORY_LIMIT, align: int = 1,
                ) -> Iterator[tuple[int, int, np.ndarray]]:
    """Pool the reader's image strip by strip: yields ``(o0, o1, rows)`` in order, each strip
    computed only when asked for, so memory stays bounded whatever the image size."""
    out_h = output_shape(reader.shape, rule.params)[1]
    height = strip_height(reader.shape, reader.dtype, rule.params, memory_limit, align)
    for o0, o1 in plan_strips(out_h, height):
        yield o0, o1, pool_output_rows(reader, rule, o0, o1)


def pool_strips(reader: Reader, rule: Rule, sink: Callable[[int, int, np.ndarray], None],
                memory_limit: int = DEFAULT_MEMORY_LIMIT, align: int = 1) -> tuple[int, int, int]:
    """Pool the reader's image strip by strip, handing each finished strip to ``sink(o0, o1, rows)``;
    returns the output shape (C, OH, OW).

    Examples
    --------
    >>> x = np.arange(48, dtype=np.int16).reshape(1, 8, 6)
    >>> out = np.empty((1, 4, 3), dtype=np.int16)
    >>> def sink(o0, o1, rows):
    ...     out[:, o0:o1] = rows
    >>> pool_strips(ArrayReader(x), Rule(PoolParams("max", (2, 2))), sink, memory_limit=1)
    (1, 4, 3)
    >>> out[0, -1].tolist()
    [43, 45, 47]
    """
    for o0, o1, rows in iter_strips(reader, rule, memory_limit, align):
        sink(o0, o1, rows)
    return output_shape(reader.shape, rule.params)
