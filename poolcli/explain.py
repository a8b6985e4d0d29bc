"""``poolcli explain``: where each output number comes from, window by window (pure NumPy).

Every number shown comes from the engine: the pooled values, the max indices, and the window
sums (the engine's own average with a divisor of 1, so in torch's addition order).  What is
computed here is only geometry: which cells a window covers, and why its divisor is what it is.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from poolcli import engine
from poolcli.params import PoolParams

MAX_SIDE = 16


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


@dataclass
class Tap:
    row: int  # in the input (may be outside it: padding or ceil overhang)
    col: int
    inside: bool
    value: float | None  # the input value, None outside


@dataclass
class Cell:
    """One output cell: its window and how its value follows."""

    out_row: int
    out_col: int
    value: float
    taps: list[Tap]
    index: int | None = None  # max: torch's flat index h*W + w
    winner: tuple[int, int] | None = None  # max: the input cell that gave the value
    total: float | None = None  # avg: the window sum (engine)
    divisor: int | None = None  # avg
    divisor_reason: str = ""


@dataclass
class PlaneExplanation:
    label: str  # "channel 0", "batch 1, channel 2"
    values: np.ndarray  # (H, W)
    output: np.ndarray  # (OH, OW)
    cells: list[Cell] = field(default_factory=list)


@dataclass
class Explanation:
    params: PoolParams
    input_shape: tuple[int, ...]  # (C, H, W) or (N, C, H, W)
    output_shape: tuple[int, ...]
    planes: list[PlaneExplanation]
    pad_rows: tuple[int, int]  # padding cells drawn above / below (ceil overhang included below)
    pad_cols: tuple[int, int]
    show_indices: bool = False  # max: spell out torch's flat index of each maximum

    @property
    def pad_value(self) -> str:
        return "-inf" if self.params.op == "max" else "0"


def explain(array: np.ndarray, params: PoolParams) -> Explanation:
    """Pool ``array`` ((H, W), (C, H, W) or (N, C, H, W)) with the engine and explain every cell.

    Raises
    ------
    ValueError
        The engine's own (torch's) message when the parameters do not fit the input.
    """
    if params.op == "max":
        values, indices = engine.max_pool2d(array, **params.max_args(), return_indices=True)
        sums = None
    else:
        values, indices = engine.avg_pool2d(array, **params.avg_args()), None
        sums = engine.avg_pool2d(array, **dict(params.avg_args(), divisor_override=1))
    planes_in = labelled_planes(array)
    planes_out = labelled_planes(values)
    planes_idx = labelled_planes(indices) if indices is not None else [None] * len(planes_out)
    planes_sum = labelled_planes(sums) if sums is not None else [None] * len(planes_out)
    height, width = array.shape[-2:]
    out_h, out_w = values.shape[-2:]
    stride = params.effective_stride
    dilation = params.dilation if params.op == "max" else (1, 1)
    explained = []
    for (label, plane), (_, out), idx, total in zip(planes_in, planes_out, planes_idx, planes_sum, strict=True):
        cells = []
        for i in range(out_h):
            for j in range(out_w):
                taps = []
                for a in range(params.kernel[0]):
                    for b in range(params.kernel[1]):
                        r = i * stride[0] - params.padding[0] + a * dilation[0]
                        c = j * stride[1] - params.padding[1] + b * dilation[1]
                        inside = 0 <= r < height and 0 <= c < width
                        taps.append(Tap(r, c, inside, float(plane[r, c]) if inside else None))
                cell = Cell(i, j, out[i, j].item(), taps)
                if idx is not None:
                    cell.index = int(idx[1][i, j])
                    cell.winner = divmod(cell.index, width) if 0 <= cell.index < height * width else None
                else:
                    assert total is not None  # avg: window sums were made for every plane
                    cell.total = total[1][i, j].item()
                    cell.divisor, cell.divisor_reason = _divisor(params, i, j, height, width)
                cells.append(cell)
        explained.append(PlaneExplanation(label, plane, out, cells))
    last_row = max(t.row for p in explained for cell in p.cells for t in cell.taps)
    last_col = max(t.col for p in explained for cell in p.cells for t in cell.taps)
    first_row = min(t.row for p in explained for cell in p.cells for t in cell.taps)
    first_col = min(t.col for p in explained for cell in p.cells for t in cell.taps)
    return Explanation(
        params, tuple(array.shape), tuple(values.shape), explained,
        (max(0, -first_row), max(0, last_row - height + 1)), (max(0, -first_col), max(0, last_col - width + 1)),
    )


def labelled_planes(array: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Each (H, W) plane of an array with its label: 'channel c' or 'batch n, channel c' (a 2-D
    array is one channel)."""
    if array.ndim == 2:
        return [("channel 0", array)]
    if array.ndim == 3:
        return [(f"channel {c}", array[c]) for c in range(array.shape[0])]
    return [(f"batch {n}, channel {c}", array[n, c]) for n in range(array.shape[0]) for c in range(array.shape[1])]


def _divisor(params: PoolParams, i: int, j: int, height: int, width: int) -> tuple[int, str]:
    """The divisor of output cell (i, j), from the engine's own per-axis rule, and why (docs/semantics.md §3)."""
    stride = params.effective_stride
    out_h = engine.output_size(height, params.kernel[0], stride[0], params.padding[0], 1, params.ceil_mode)
    out_w = engine.output_size(width, params.kernel[1], stride[1], params.padding[1], 1, params.ceil_mode)

    def count(include_pad: bool) -> int:
        rows = engine._axis_divisors(out_h, params.kernel[0], stride[0], params.padding[0], height, include_pad)
        cols = engine._axis_divisors(out_w, params.kernel[1], stride[1], params.padding[1], width, include_pad)
        return int(rows[i] * cols[j])

    window = params.kernel[0] * params.kernel[1]
    in_padded, real = count(True), count(False)
    if params.divisor_override is not None:
        return params.divisor_override, "divisor_override replaces every divisor"
    if params.count_include_pad:
        if in_padded < window:
            return in_padded, (f"{in_padded} of the window's {window} cells lie within the padded input; the "
                               f"{window - in_padded} past the right padding (ceil mode) never count")
        if real < in_padded:
            return in_padded, f"all {window} cells count, padding included (count_include_pad)"
        return in_padded, f"the window's {window} cells"
    if real < window:
        return real, f"only the {real} cells inside the input count (count_include_pad is off)"
    return real, f"the window's {window} cells"


def format_number(value: object) -> str:
    """A number as grids show it: up to 6 significant digits; nan, inf and -inf spelled out."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{float(value):.6g}"
    return str(value)
