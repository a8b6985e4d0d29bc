"""MATRIX, the input of ``poolcli explain``: a literal, a ``.npy`` file or an image, as an array.

May import: NumPy, ``poolcli.arrays``, ``poolcli.errors`` and the standard library; Pillow (``poolcli.images``) only
when MATRIX is an image.
"""

from __future__ import annotations

import os
import re
import stat

import numpy as np

from poolcli import arrays
from poolcli.errors import PoolcliError
from poolcli.explain.model import MAX_SIDE


class MatrixError(PoolcliError, ValueError):
    """A matrix literal or input that cannot be explained; the message says why."""


def parse_matrix(text: str) -> np.ndarray:
    """A matrix literal as a float32 array.

    Either rows by ``;`` (or new lines), values by spaces or commas (``"0 1 2; 3 4 5"``), a
    (rows, cols) array; or NumPy/torch bracket form (:func:`parse_brackets`), which may also
    nest 3 or 4 deep for (C, H, W) and (N, C, H, W).  ``nan``, ``inf`` and ``-inf`` are numbers.

    Examples
    --------
    >>> parse_matrix("0 1 2; 3 4 5").tolist()
    [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    >>> parse_matrix("[[0,1,2],[3,4,5]]").shape
    (2, 3)
    """
    if "[" in text:
        return parse_brackets(text)
    rows_text = [row for row in re.split(r"[;\n]", text.strip()) if row.strip()]
    if not rows_text:
        raise MatrixError("the matrix is empty")
    rows: list[list[float]] = []
    for number, row in enumerate(rows_text, start=1):
        values = [_number(cell, f"row {number}") for cell in re.split(r"[\s,]+", row.strip()) if cell]
        if rows and len(values) != len(rows[0]):
            raise MatrixError(f"row {number} has {len(values)} values but row 1 has {len(rows[0])}: "
                              "every row needs the same number of values")
        rows.append(values)
    return _float32(rows)


def _number(cell: str, where: str) -> float:
    try:
        return float(cell)
    except ValueError:
        raise MatrixError(f"{cell!r} in {where} is not a number") from None


def _float32(values: object) -> np.ndarray:
    with np.errstate(over="ignore"):  # 1e39 is inf in float32, as in torch
        return np.array(values, dtype=np.float32)


# A bracket literal, as NumPy and torch print arrays: an optional call around it (``tensor(``,
# ``np.array(``, ``array(``) with keyword arguments after it (``dtype=torch.float32``), which are
# ignored: literals are float32.
_CALL = re.compile(r"^\s*(?:[A-Za-z_][\w.]*\(\s*)?(?P<body>\[.*\])(?P<rest>.*)$", re.S)
_KEYWORDS = re.compile(r"^(?:\s*,\s*[A-Za-z_]\w*\s*=\s*[\w.\'\"]+)*\s*\)?\s*$")
_TOKEN = re.compile(r"\[|\]|[^\s,\[\]]+")


def parse_brackets(text: str) -> np.ndarray:
    """NumPy/torch bracket form: ``[[0,1,2],[3,4,5]]``, ``[[0 1 2]\n [3 4 5]]`` (NumPy's print),
    ``tensor([[0., 1.], [2., 3.]])``, ``array([[0, 1]], dtype=uint8)``.  One level of brackets is
    a row, two are (H, W), three (C, H, W), four (N, C, H, W); as float32.

    Examples
    --------
    >>> parse_brackets("tensor([[0., 1.], [2., nan]], dtype=torch.float64)").tolist()
    [[0.0, 1.0], [2.0, nan]]
    >>> parse_brackets("[[[1, 2]], [[3, 4]]]").shape
    (2, 1, 2)
    """
    match = _CALL.match(text)
    if match is None or not _KEYWORDS.match(match["rest"]):
        raise MatrixError(f"{text.strip()!r} is not a matrix literal: use rows of numbers in brackets, "
                          "like [[0,1,2],[3,4,5]]")
    stack: list[list[object]] = []
    top: list[object] = []
    for token in _TOKEN.findall(match["body"]):
        if token == "[":
            stack.append(top)
            top = []
        elif token == "]":
            if not stack:
                raise MatrixError("a ']' closes no '['")
            done, top = top, stack.pop()
            top.append(done)
        else:
            top.append(_number(token, "the matrix"))
    if stack or len(top) != 1:
        raise MatrixError("the brackets do not pair up: every '[' needs its ']'")
    value = top[0]
    depth = _check_shape(value, "")
    if depth > 4:
        raise MatrixError(f"{depth} levels of brackets: explain takes at most 4, (N, C, H, W)")
    array = _float32(value)
    if array.size == 0:
        raise MatrixError("the matrix is empty")
    return array.reshape(1, -1) if depth == 1 else array


def _check_shape(value: object, where: str) -> int:
    """The depth of a nested list of numbers; a ragged one is a :class:`MatrixError` naming the
    first row that differs (``row 2``, ``row 1, 3`` below the top)."""
    if not isinstance(value, list):
        return 0
    shapes = []
    for n, item in enumerate(value, start=1):
        if isinstance(item, list) != isinstance(value[0], list):
            kinds = ("a row", "a number") if isinstance(item, list) else ("a number", "a row")
            raise MatrixError(f"item {where}{n} is {kinds[0]} but item {where}1 is {kinds[1]}")
        shapes.append((_check_shape(item, f"{where}{n}, "), len(item) if isinstance(item, list) else 0))
        if shapes[-1] != shapes[0]:
            kind = "rows" if shapes[0][0] > 1 else "values"
            raise MatrixError(f"row {where}{n} has {shapes[-1][1]} {kind} but row {where}1 has {shapes[0][1]}: "
                              f"every row needs the same number of {kind}")
    return 1 + (shapes[0][0] if shapes else 0)


def looks_like_literal(text: str) -> bool:
    """Is MATRIX meant as a literal?  Separators or brackets say so; so does a lone number."""
    if re.search(r"[;,\s\[]", text.strip()):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


class ExplainInputError(PoolcliError):
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
            raise MatrixError(f"{text!r} is neither a matrix literal (like \"0 1 2; 3 4 5\" "
                              "or [[0,1,2],[3,4,5]]) nor an existing file")
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
