"""``.npy`` arrays in: sniffing and loading, once for the whole package.

The header is read and checked before any data is allocated: a damaged header, a shape that
claims more bytes than the file holds, an unsupported dtype or a pickled object array is refused
with one line saying what is wrong with the file (:class:`ArrayError`), never a Python traceback.

May import: NumPy, the standard library and ``errors`` (no Pillow, Rich or Click).
"""

from __future__ import annotations

import io
import math
import os
from typing import BinaryIO

import numpy as np
import numpy.lib.format as npy_format

from poolcli.errors import PoolcliError

NPY_MAGIC = b"\x93NUMPY"

# The dtypes the engine pools (torch's integer and float types; bool and complex are not).
SUPPORTED_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
                    "float16", "float32", "float64")

# numpy's own header-size limit; a header longer than this is damaged, not read.
MAX_HEADER_BYTES = 10_000


class ArrayError(PoolcliError):
    """A ``.npy`` input that cannot be pooled; the message says what is wrong with the file."""


def is_npy(source: bytes | str) -> bool:
    """Is ``source`` (the bytes read from stdin, or a path) a ``.npy`` array?  The ``.npy``
    extension says so; otherwise the magic bytes do.

    Examples
    --------
    >>> is_npy(b"\\x93NUMPY\\x01\\x00"), is_npy(b"\\x89PNG")
    (True, False)
    """
    if isinstance(source, bytes):
        return source.startswith(NPY_MAGIC)
    if source.lower().endswith(".npy"):
        return True
    with open(source, "rb") as handle:
        return handle.read(len(NPY_MAGIC)) == NPY_MAGIC


def check_dtype(dtype: np.dtype) -> None:
    """Refuse a dtype the engine cannot pool, naming it and the supported ones.

    Examples
    --------
    >>> check_dtype(np.dtype("complex64"))
    Traceback (most recent call last):
    ...
    poolcli.arrays.ArrayError: unsupported dtype complex64; supported: uint8, int8, uint16, int16, uint32, int32, \
uint64, int64, float16, float32, float64
    """
    if dtype.fields is not None or dtype.subdtype is not None:
        name = f"structured {dtype.descr}" if dtype.fields is not None else f"sub-array {dtype.str}"
    elif dtype.newbyteorder("=").name in SUPPORTED_DTYPES:
        return
    else:
        name = f"{dtype.name} ({dtype.str})" if dtype.kind in "SUV" else dtype.name
    raise ArrayError(f"unsupported dtype {name}; supported: {', '.join(SUPPORTED_DTYPES)}")


def _header(handle: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = npy_format.read_magic(handle)
        # Version 3.0 differs from 2.0 only by a UTF-8 header; latin-1 reads every byte, and a
        # non-ASCII header could only name a structured dtype, which is refused below anyway.
        read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f"unknown format version {version[0]}.{version[1]}")
        shape, fortran_order, dtype = read(handle, max_header_size=MAX_HEADER_BYTES)
    except ValueError as error:  # numpy's own reasons: bad magic, version, keys, descr, EOF
        reason = str(error).splitlines()[0] if str(error) else "unreadable"
        raise ArrayError(f"damaged .npy header ({reason})") from None
    except Exception:  # the header's dictionary fed to Python's tokenizer: TokenError, SyntaxError, ...
        raise ArrayError("damaged .npy header (its dictionary does not parse)") from None
    if any(size < 0 for size in shape):
        raise ArrayError(f"damaged .npy header (negative size in shape {shape})")
    return tuple(shape), bool(fortran_order), dtype


def header_of(data: bytes) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a ``.npy`` header claims, from the first bytes of the file.

    Raises
    ------
    ArrayError
        When the header is damaged or not complete yet.

    Examples
    --------
    >>> buffer = io.BytesIO()
    >>> np.save(buffer, np.zeros((2, 3), dtype=np.int16))
    >>> header_of(buffer.getvalue()[:128])
    ((2, 3), dtype('int16'))
    """
    shape, _, dtype = _header(io.BytesIO(data))
    return shape, dtype


def load_npy(source: bytes | str) -> np.ndarray:
    """Load a ``.npy`` array of shape (H, W), (C, H, W) or (N, C, H, W) and a supported dtype,
    checking its header against the file's size before anything is allocated.

    Raises
    ------
    ArrayError
        With the reason: damaged header, truncated data, unsupported dtype, wrong number of axes.
    OSError
        When the file cannot be read at all.

    Examples
    --------
    >>> buffer = io.BytesIO()
    >>> np.save(buffer, np.arange(4, dtype=np.uint8).reshape(2, 2))
    >>> load_npy(buffer.getvalue()).tolist()
    [[0, 1], [2, 3]]
    >>> load_npy(buffer.getvalue()[:-1])
    Traceback (most recent call last):
    ...
    poolcli.arrays.ArrayError: truncated .npy data: the header's shape (2, 2) of uint8 needs 4 bytes, the file holds 3
    """
    handle: BinaryIO
    if isinstance(source, bytes):
        handle, total = io.BytesIO(source), len(source)
    else:
        handle = open(source, "rb")  # noqa: SIM115 (closed below)
        total = os.fstat(handle.fileno()).st_size
    with handle:
        shape, fortran_order, dtype = _header(handle)
        check_dtype(dtype)
        if len(shape) not in (2, 3, 4):
            raise ArrayError(f"a .npy input must have shape (H, W), (C, H, W) or (N, C, H, W), not {shape}")
        needed = math.prod(shape) * dtype.itemsize  # Python ints: no overflow on absurd shapes
        held = total - handle.tell()
        if needed > held:
            raise ArrayError(f"truncated .npy data: the header's shape {shape} of {dtype.name} needs {needed} "
                             f"bytes, the file holds {held}")
        # Read straight into the array (no second copy), as np.load does for files.
        flat = np.empty(math.prod(shape), dtype=dtype)
        if handle.readinto(flat.view(np.uint8).data) != needed:
            raise ArrayError(f"truncated .npy data: the file ended before the {needed} bytes its header promises")
    return flat.reshape(shape, order="F" if fortran_order else "C")
