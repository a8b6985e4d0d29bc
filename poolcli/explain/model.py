"""What ``poolcli explain`` shows: the explanation of every output cell, and its panels.

Every number shown comes from the engine: the pooled values, the max indices, and the window
sums (the engine's own average with a divisor of 1, so in torch's addition order).  What is
computed here is only geometry: which cells a window covers, and why its divisor is what it is
(the engine's public :func:`~poolcli.engine.axis_divisors`).  The panels (titled grids of styled
text) are the one picture that the terminal (``render``), SVG and PNG (``picture``) draw.

May import: NumPy, the engine, errors and params (no Pillow, Rich or Click).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from poolcli import engine
from poolcli.errors import PoolcliError
from poolcli.params import PoolParams

# At most this many values per side of a plane are explained (--crop picks a part).
MAX_SIDE = 16
# At most this many planes (channels x batch) are explained unless --channel chooses.
MAX_PLANES = 4
# The drawn grid (input, padding and ceil-mode overhang) has at most this many cells per side.
MAX_GRID_SIDE = 2 * MAX_SIDE


class Style(NamedTuple):
    """How one kind of grid cell looks: on the terminal (a Rich style) and in the PNG."""

    rich: str
    background: str
    ink: str


# The style of each kind of cell, for every rendering (terminal, SVG, PNG).
STYLES = {
    "normal": Style("", "#ffffff", "#000000"),
    "pad": Style("dim", "#eeeeee", "#999999"),
    "tap": Style("bold black on yellow", "#ffd84d", "#000000"),
    "pad_tap": Style("black on bright_black", "#bbbbbb", "#000000"),
    "winner": Style("bold white on red", "#d62728", "#ffffff"),
    "result": Style("bold white on blue", "#1f77b4", "#ffffff"),
}

Row = list[tuple[str, str]]  # (text, style name) of each cell


class Panel(NamedTuple):
    """One titled grid with its caption: the unit of every rendering."""

    title: str
    rows: list[Row]
    caption: str


class ExplainLimit(PoolcliError, ValueError):
    """The explanation would be too large to show; the message names the option that helps."""


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
    input_shape: tuple[int, ...]  # (H, W), (C, H, W) or (N, C, H, W): the whole input
    output_shape: tuple[int, ...]
    planes: list[PlaneExplanation]
    pad_rows: tuple[int, int]  # padding cells drawn above / below (ceil overhang included below)
    pad_cols: tuple[int, int]
    show_indices: bool = False  # max: spell out torch's flat index of each maximum
    hidden_planes: int = 0  # planes not explained (more than MAX_PLANES and no --channel)

    @property
    def pad_value(self) -> str:
        return self.params.spec.padding_value


class ChannelError(PoolcliError, ValueError):
    """A --channel that the input does not have."""


def choose_planes(shape: tuple[int, ...], channels: list[int] | None) -> tuple[list[tuple[int, ...]], int]:
    """The indices (before the last two axes) of the planes to explain, and how many are left out.

    Without ``channels``, the first :data:`MAX_PLANES` planes; with them, those channels of each
    batch item, at most :data:`MAX_PLANES` planes in all.

    Examples
    --------
    >>> choose_planes((6, 3, 3), None)
    ([(0,), (1,), (2,), (3,)], 2)
    >>> choose_planes((2, 3, 4, 4), [2])
    ([(0, 2), (1, 2)], 0)
    """
    if len(shape) == 2:
        every: list[tuple[int, ...]] = [()]
        count = 1
    else:
        count = shape[-3]
        batches = [()] if len(shape) == 3 else [(n,) for n in range(shape[0])]
        every = [(*n, c) for n in batches for c in range(count)]
    if channels is None:
        return every[:MAX_PLANES], max(0, len(every) - MAX_PLANES)
    wrong = [c for c in channels if not 0 <= c < count]
    if wrong:
        have = "1 channel (0)" if count == 1 else f"{count} channels (0 to {count - 1})"
        raise ChannelError(f"the input has no channel {wrong[0]}: it has {have}")
    chosen = [index for index in every if (index[-1] if index else 0) in channels]
    if len(chosen) > MAX_PLANES:
        raise ExplainLimit(f"{len(chosen)} planes chosen; explain shows at most {MAX_PLANES} at once: "
                           "choose fewer with --channel")
    return chosen, 0


def plane_label(index: tuple[int, ...]) -> str:
    """'channel c' or 'batch n, channel c' (a 2-D array is channel 0)."""
    if len(index) == 2:
        return f"batch {index[0]}, channel {index[1]}"
    return f"channel {index[0] if index else 0}"


def drawn_padding(size: int, out: int, kernel: int, stride: int, padding: int, dilation: int) -> tuple[int, int]:
    """Cells drawn before and after the input along one axis: the padding and ceil-mode overhang
    that some window's taps reach (the first tap is at ``-padding``, the last window's last one at
    ``(out - 1) * stride - padding + dilation * (kernel - 1)``)."""
    last = (out - 1) * stride - padding + dilation * (kernel - 1)
    return padding, max(0, last - size + 1)


def explain(array: np.ndarray, params: PoolParams, channels: list[int] | None = None) -> Explanation:
    """Pool ``array`` ((H, W), (C, H, W) or (N, C, H, W)) with the engine and explain every cell of
    the chosen planes (see :func:`choose_planes`).

    Raises
    ------
    ValueError
        The engine's own (torch's) message when the parameters do not fit the input.
    ExplainLimit
        When the grid to draw (input, padding, overhang) exceeds :data:`MAX_GRID_SIDE` per side.
    ChannelError
        A chosen channel that the input does not have.

    Examples
    --------
    >>> expl = explain(np.arange(9.0).reshape(3, 3), PoolParams("max", (2, 2), (1, 1)))
    >>> expl.planes[0].output.tolist(), expl.planes[0].cells[0].winner
    ([[4.0, 5.0], [7.0, 8.0]], (1, 1))
    """
    chosen, hidden = choose_planes(tuple(array.shape), channels)
    height, width = array.shape[-2:]
    # Only the chosen planes are pooled: planes are independent, and the rest may be many.
    stack = np.stack([array[index] for index in chosen])
    if params.spec.indices:
        values, indices = engine.max_pool2d(stack, **params.max_args(), return_indices=True)
        sums = None
    else:
        values, indices = engine.avg_pool2d(stack, **params.avg_args()), None
        sums = engine.avg_pool2d(stack, **dict(params.avg_args(), divisor_override=1))
    out_h, out_w = values.shape[-2:]
    stride = params.effective_stride
    dilation = params.effective_dilation
    pad_rows = drawn_padding(height, out_h, params.kernel[0], stride[0], params.padding[0], dilation[0])
    pad_cols = drawn_padding(width, out_w, params.kernel[1], stride[1], params.padding[1], dilation[1])
    grid_h, grid_w = height + sum(pad_rows), width + sum(pad_cols)
    if max(grid_h, grid_w) > MAX_GRID_SIDE:
        raise ExplainLimit(f"the grid to draw (input, padding and windows) would be {grid_w}x{grid_h} cells "
                           f"(W x H); explain draws at most {MAX_GRID_SIDE}x{MAX_GRID_SIDE}: use a smaller "
                           "-k/--kernel, -p/--padding or -d/--dilation")
    divisors = _divisors(params, height, width, out_h, out_w) if params.spec.averages else None
    explained = []
    for p, index in enumerate(chosen):
        plane, out = stack[p], values[p]
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
                if indices is not None:
                    cell.index = int(indices[p, i, j])
                    cell.winner = divmod(cell.index, width) if 0 <= cell.index < height * width else None
                elif sums is not None and divisors is not None:
                    cell.total = sums[p, i, j].item()
                    cell.divisor, cell.divisor_reason = divisors(i, j)
                cells.append(cell)
        explained.append(PlaneExplanation(plane_label(index), plane, out, cells))
    output_shape = (*array.shape[:-2], out_h, out_w)
    return Explanation(params, tuple(array.shape), output_shape, explained, pad_rows, pad_cols,
                       hidden_planes=hidden)


def labelled_planes(array: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Each (H, W) plane of an array with its label: 'channel c' or 'batch n, channel c' (a 2-D
    array is one channel)."""
    if array.ndim == 2:
        return [("channel 0", array)]
    if array.ndim == 3:
        return [(f"channel {c}", array[c]) for c in range(array.shape[0])]
    return [(f"batch {n}, channel {c}", array[n, c]) for n in range(array.shape[0]) for c in range(array.shape[1])]


def _divisors(params: PoolParams, height: int, width: int, out_h: int,
              out_w: int) -> Callable[[int, int], tuple[int, str]]:
    """The divisor of each output cell (i, j), from the engine's own per-axis rule, and why (docs/semantics.md §3)."""
    stride = params.effective_stride
    factors = {
        include_pad: (
            engine.axis_divisors(out_h, params.kernel[0], stride[0], params.padding[0], height, include_pad),
            engine.axis_divisors(out_w, params.kernel[1], stride[1], params.padding[1], width, include_pad),
        )
        for include_pad in (True, False)
    }
    window = params.kernel[0] * params.kernel[1]

    def divisor(i: int, j: int) -> tuple[int, str]:
        (rows_p, cols_p), (rows_r, cols_r) = factors[True], factors[False]
        in_padded, real = int(rows_p[i] * cols_p[j]), int(rows_r[i] * cols_r[j])
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

    return divisor


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


def explanation_panels(expl: Explanation, summary: bool) -> list[Panel]:
    """The picture of an explanation as panels: (title, rows of (text, style key), caption).

    Shared by the terminal, SVG and PNG renderings so that they show the same thing.
    """
    panels = []
    for plane in expl.planes:
        panels.append(Panel(f"input {plane.label}", _padded_grid(expl, plane, None), _shape_caption(expl.input_shape)))
        if not summary:
            for cell in plane.cells:
                panels.append(Panel(f"{plane.label}: out[{cell.out_row}, {cell.out_col}] = {format_number(cell.value)}",
                               _padded_grid(expl, plane, cell), cell_explanation(expl, cell)))
        out_rows = [[(format_number(v.item()), "normal") for v in row] for row in plane.output]
        panels.append(Panel(f"output {plane.label}", out_rows, _shape_caption(expl.output_shape)))
    return panels


def _shape_caption(shape: tuple[int, ...]) -> str:
    order = "(N, C, H, W)" if len(shape) == 4 else "(C, H, W)"
    shown = shape if len(shape) != 2 else (1, *shape)
    return "shape (" + ", ".join(str(s) for s in shown) + f") {order}"


def _padded_grid(expl: Explanation, plane: PlaneExplanation, cell: Cell | None) -> list[Row]:
    """The input plane with its padding drawn, and the cells of ``cell``'s window marked."""
    height, width = plane.values.shape
    (top, bottom), (left, right) = expl.pad_rows, expl.pad_cols
    taps = {(t.row, t.col) for t in cell.taps} if cell is not None else set()
    winner = cell.winner if cell is not None and expl.params.spec.indices else None
    rows = []
    for r in range(-top, height + bottom):
        row = []
        for c in range(-left, width + right):
            inside = 0 <= r < height and 0 <= c < width
            pad_h, pad_w = expl.params.padding
            in_padding = -pad_h <= r < height + pad_h and -pad_w <= c < width + pad_w
            # Past the right/bottom padding (ceil mode) there is nothing, not even padding.
            text = format_number(float(plane.values[r, c])) if inside else (expl.pad_value if in_padding else "·")
            # Brackets mark the window without colour too (pipes, NO_COLOR, the PNG).
            if cell is not None and (r, c) == winner and any(t.inside for t in cell.taps):
                style, text = "winner", f"[{text}]*"
            elif (r, c) in taps:
                style, text = ("tap" if inside else "pad_tap"), f"[{text}]"
            else:
                style = "normal" if inside else "pad"
            row.append((text, style))
        rows.append(row)
    return rows


def cell_explanation(expl: Explanation, cell: Cell) -> str:
    """How one output value follows from its window, in one or two sentences."""
    inside = [t for t in cell.taps if t.inside]
    skipped = len(cell.taps) - len(inside)
    if not expl.params.spec.averages:
        if not inside:
            return (f"no tap of this window lies inside the input: the result is the lowest value, "
                    f"{format_number(cell.value)}, and the index {cell.index} points outside the plane (torch's rule)")
        values = ", ".join(format_number(t.value) for t in inside)
        text = f"max({values}) = {format_number(cell.value)}"
        if cell.winner is not None:
            row, col = cell.winner
            text += f", at input row {row}, col {col}"
            if expl.show_indices:
                width = expl.planes[0].values.shape[1]
                text += f"; index {row}*{width} + {col} = {cell.index}"
        if math.isnan(cell.value):
            text += " (a NaN always wins; its index is the last NaN's)"
        elif sum(t.value == cell.value for t in inside) > 1:
            text += " (a tie: the first in row-major order wins)"
        if skipped:
            taps = f"{skipped} taps outside the input are" if skipped > 1 else "1 tap outside the input is"
            text += f"; {taps} skipped"
        return text
    terms = " + ".join(format_number(t.value) for t in inside) or "0"
    return (f"({terms}) / {cell.divisor} = {format_number(cell.total)} / {cell.divisor} = "
            f"{format_number(cell.value)}; divisor {cell.divisor}: {cell.divisor_reason}")
