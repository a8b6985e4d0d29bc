"""MATRIX, the input of ``poolcli explain``: a literal, a ``.npy`` file or an image, as an array.

May import: NumPy, ``poolcli.arrays`` and the standard library; Pillow (``poolcli.images``) only
when MATRIX is an image.
"""

from __future__ import annotations

import os
import re
import stat

import numpy as np

from poolcli import arrays
from poolcli.explain.model import MAX_SIDE


class MatrixError(ValueError):
    """A matrix literal or input that cannot be explained; the message says why."""


def parse_matrix(text: str) -> np.ndarray:
    """``"0 1 2; 3 4 5"`` → a float32 (rows, cols) array.  Values by spaces or commas, rows by ``;``
    (or new lines); ``nan``, ``inf`` and ``-inf`` are numbers too.

    Examples
    --------
    >>> parse_matrix("0 1 2; 3 4 5").tolist()
    [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    """
    rows_text = [row for row in re.split(r"[;\n]", text.strip()) if row.strip()]
    if not rows_text:
        raise MatrixError("the matrix is empty")
    rows: list[list[float]] = []
    for number, row in enumerate(rows_text, start=1):
        cells = [cell for cell in re.split(r"[\s,]+", row.strip()) if cell]
        values = []
        for cell in cells:
            try:
                values.append(float(cell))
            except ValueError:
                raise MatrixError(f"{cell!r} in row {number} is not a number") from None
        if rows and len(values) != len(rows[0]):
            raise MatrixError(f"row {number} has {len(values)} values but row 1 has {len(rows[0])}: "
                              "every row needs the same number of values")
        rows.append(values)
    with np.errstate(over="ignore"):  # 1e39 is inf in float32, as in torch
        return np.array(rows, dtype=np.float32)


def looks_like_literal(text: str) -> bool:
    """Is MATRIX meant as a literal?  Separators say so; so does a lone number."""
    if re.search(r"[;,\s]", text.strip()):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


class ExplainInputError(Exception):
    """MATRIX names a file that cannot be read (exit 1)."""


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def load_matrix(text: str, box: tuple[int, ...] | None = None) -> np.ndarray:
    """MATRIX as an array: a literal (float32), a .npy file (as stored) or an image (its pixel
    values as float32, channels first); ``box`` = (x, y, w, h) crops the last two axes.

    Only regular files are read: a FIFO or a device would block or never end, so it is refused
    before it is opened.

    Raises
    ------
    MatrixError
        A bad literal, a crop outside the input, or more than ``MAX_SIDE`` values per side (usage).
    ExplainInputError
        A file that cannot be read or is not an array or image (exit 1).
    """
    try:
        info = os.stat(text)
    except (OSError, ValueError):  # no such file, a name too long or with a NUL: a literal, or a mistake
        info = None
    if info is None:
        if not looks_like_literal(text):
            raise MatrixError(f"{text!r} is neither a matrix literal (like \"0 1 2; 3 4 5\") nor an existing file")
        array = parse_matrix(text)
    elif stat.S_ISDIR(info.st_mode):
        raise ExplainInputError("is a folder, not a file")
    elif not stat.S_ISREG(info.st_mode):
        raise ExplainInputError(f"is {_file_kind(info.st_mode)}: explain reads MATRIX from a regular file "
                                "or a literal")
    else:
        array = _load_file(text)
    if box is not None:
        x, y, w, h = box
        height, width = array.shape[-2:]
        if x + w > width or y + h > height:
            raise MatrixError(f"--crop {x},{y},{w},{h} reaches outside the {width}x{height} input")
        array = array[..., y:y + h, x:x + w]
    height, width = array.shape[-2:]
    if height > MAX_SIDE or width > MAX_SIDE:
        raise MatrixError(f"the input is {width}x{height} (W x H); explain shows at most {MAX_SIDE}x{MAX_SIDE} "
                          "values: choose a part with --crop X,Y,W,H")
    return array


def _load_file(path: str) -> np.ndarray:
    try:
        if arrays.is_npy(path):
            return arrays.load_npy(path)
        from poolcli import images

        try:
            picture = images.decode(path)
        except images.ImageError as error:
            raise ExplainInputError(str(error)) from None
        return np.ascontiguousarray(np.asarray(picture.frames[0]).transpose(2, 0, 1), dtype=np.float32)
    except arrays.ArrayError as error:
        raise ExplainInputError(str(error)) from None
    except MemoryError:
        raise ExplainInputError("not enough memory to read it") from None
    except OSError as error:
        raise ExplainInputError(error.strerror or str(error)) from None
