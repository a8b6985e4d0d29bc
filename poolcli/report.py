"""What a run tells its user: the Rich report on stderr and the JSON line (the only module that
uses Rich)."""

from __future__ import annotations

import math
from typing import IO, Any

import numpy as np
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from poolcli.engine import AxisArithmetic, axis_arithmetic
from poolcli.explain import Cell, Explanation, PlaneExplanation, format_number, labelled_planes
from poolcli.params import PoolParams
from poolcli.results import Result, json_line

__all__ = ["Result", "json_line", "make_console", "render", "render_summary"]

# At most this many planes (channels x batch) are drawn as grids.
GRID_PLANES = 4


def make_console(stream: IO[str] | None = None) -> Console:
    """A console on stderr: colour only on a terminal, never with NO_COLOR (Rich's own rules)."""
    return Console(file=stream, stderr=stream is None, highlight=False, soft_wrap=False)


def _pair(values: tuple[int, int]) -> str:
    return str(values[0]) if values[0] == values[1] else f"{values[0]}x{values[1]}"


def parameter_lines(params: PoolParams) -> list[Text]:
    """Every parameter, with the defaults that applied marked as such."""
    lines = [Text.assemble(("kernel_size ", "bold"), _pair(params.kernel))]
    stride = Text.assemble(("stride ", "bold"), _pair(params.effective_stride))
    if params.stride is None:
        stride.append("  (default: the kernel)", style="dim")
    lines.append(stride)

    def with_default(name: str, value: str, is_default: bool) -> Text:
        text = Text.assemble((f"{name} ", "bold"), value)
        if is_default:
            text.append("  (default)", style="dim")
        return text

    lines.append(with_default("padding", _pair(params.padding), params.padding == (0, 0)))
    if params.op == "max":
        lines.append(with_default("dilation", _pair(params.dilation), params.dilation == (1, 1)))
    lines.append(with_default("ceil_mode", str(params.ceil_mode), not params.ceil_mode))
    if params.op == "avg":
        lines.append(with_default("count_include_pad", str(params.count_include_pad), params.count_include_pad))
        override = "None" if params.divisor_override is None else str(params.divisor_override)
        lines.append(with_default("divisor_override", override, params.divisor_override is None))
    return lines


def arithmetic(params: PoolParams, height: int, width: int) -> list[AxisArithmetic]:
    stride = params.effective_stride
    dilation = params.dilation if params.op == "max" else (1, 1)
    return [
        axis_arithmetic(size, params.kernel[a], stride[a], params.padding[a], dilation[a], params.ceil_mode)
        for a, size in enumerate((height, width))
    ]


def arithmetic_line(name: str, a: AxisArithmetic) -> Text:
    """``H: floor((3 + 2*0 - 1*(2-1) - 1) / 1) + 1 = 2``; in ceil mode ``ceil(...)``, with
    ``- 1 = N`` when the correction dropped the last window (see :func:`correction_note`)."""
    core = f"{a.size} + 2*{a.padding} - {a.dilation}*({a.kernel}-1) - 1"
    rounding = "ceil" if a.ceil_mode else "floor"
    text = Text.assemble((f"{name}: ", "bold"), f"{rounding}(({core}) / {a.stride}) + 1 = {a.uncorrected}")
    if a.corrected:
        text.append(f" - 1 = {a.output}", style="bold")
    if a.output < 1:
        text.append("  (too small)", style="red")
    return text


def correction_note(name: str, a: AxisArithmetic) -> Text | None:
    """Why ceil mode dropped a window along an axis, or None."""
    if not a.corrected:
        return None
    start = (a.uncorrected - 1) * a.stride - a.padding
    return Text(f"{name}: the last window would start at {start}, in the right padding, so it is dropped",
                style="yellow")


def add_operation_rows(table: Table, params: PoolParams, height: int, width: int) -> None:
    """The operation, every parameter, and the output-size arithmetic of both axes."""
    table.add_row("operation", Text(f"{params.op}_pool2d", style="bold"))
    for line in parameter_lines(params):
        table.add_row("", line)
    axes = list(zip(("H", "W"), arithmetic(params, height, width), strict=True))
    for name, axis in axes:
        table.add_row("output size" if name == "H" else "", arithmetic_line(name, axis))
    for name, axis in axes:
        note = correction_note(name, axis)
        if note is not None:
            table.add_row("ceil mode", note)


def grid(plane: np.ndarray, styles: dict[tuple[int, int], str] | None = None) -> Table:
    """A 2-D array as a table of numbers (right-aligned, no header)."""
    table = Table(show_header=False, box=None, padding=(0, 1))
    for _ in range(plane.shape[1]):
        table.add_column(justify="right")
    for r in range(plane.shape[0]):
        cells = []
        for c in range(plane.shape[1]):
            style = (styles or {}).get((r, c))
            cells.append(Text(format_number(plane[r, c]), style=style or ""))
        table.add_row(*cells)
    return table


def shape_text(shape: tuple[int, ...] | None) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")" if shape else "?"


def render(result: Result, params: PoolParams, console: Console) -> None:
    """Print the report of one input."""
    if result.status == "error":
        console.print(Text.assemble(("error ", "bold red"), f"{result.input}: {result.error}"))
        return
    if result.status == "skipped":
        console.print(Text.assemble(("skipped ", "yellow"), f"{result.input}: {result.error or 'output exists'}"))
        return
    table = Table.grid(padding=(0, 2))
    table.add_column(style="cyan", justify="right")
    table.add_column()
    frames = f", {result.frames} frames" if result.frames > 1 else ""
    table.add_row("input", Text("- (standard input)" if result.input == "-" else result.input))
    table.add_row("", Text(f"{result.description}, shape {shape_text(result.input_shape)} (C, H, W){frames}"))
    if result.full_input_shape and result.full_input_shape != result.input_shape:
        table.add_row("", Text(f"array shape {shape_text(result.full_input_shape)}"))
    if result.input_shape:
        add_operation_rows(table, params, *result.input_shape[-2:])
    shown = "- (standard output)" if result.output == "-" else (result.output or "(not written)")
    table.add_row("output", Text(shown))
    out_shape = shape_text(result.output_shape)
    full = result.full_output_shape
    written = f"{result.output_description}, " if result.output_description else ""
    table.add_row("", Text(f"{written}shape {out_shape} (C, H, W)" + (f", array shape {shape_text(full)}"
                                                            if full and full != result.output_shape else "")))
    for note in result.notes:
        table.add_row("note", Text(note, style="yellow"))
    table.add_row("time", Text(f"{result.seconds:.3f} s"))
    parts: list[Any] = [table]
    if result.input_values is not None and result.output_values is not None:
        parts.append(_value_grids(result.input_values, result.output_values))
    console.print(Group(*parts))


def _value_grids(before: np.ndarray, after: np.ndarray) -> Table:
    layout = Table.grid(padding=(0, 4))
    layout.add_column()
    layout.add_column()
    layout.add_column()
    pairs = list(zip(labelled_planes(before), labelled_planes(after), strict=True))
    for (label, plane_in), (_, plane_out) in pairs[:GRID_PLANES]:
        layout.add_row(
            Group(Text(f"input {label}".strip(), style="bold", no_wrap=True), grid(plane_in)),
            Text("\n→", style="bold"),
            Group(Text(f"output {label}".strip(), style="bold", no_wrap=True), grid(plane_out)),
        )
    hidden = len(labelled_planes(before)) - GRID_PLANES
    if hidden > 0:
        layout.add_row(Text(f"… {hidden} more planes not shown", style="dim"), "", "")
    return layout


def render_summary(results: list[Result], seconds: float, console: Console) -> None:
    """The closing table of a multi-file run: counts, time, rate, and the failures with reasons."""
    ok = sum(r.status == "ok" for r in results)
    failed = [r for r in results if r.status == "error"]
    skipped = sum(r.status == "skipped" for r in results)
    table = Table(title="poolcli summary", show_header=True, header_style="bold")
    for name in ("ok", "failed", "skipped", "time", "images/s"):
        table.add_column(name, justify="right")
    rate = ok / seconds if seconds > 0 else 0.0
    table.add_row(str(ok), str(len(failed)), str(skipped), f"{seconds:.2f} s", f"{rate:.1f}")
    console.print(table)
    if failed:
        errors = Table(title="failed files", show_header=True, header_style="bold red")
        errors.add_column("file")
        errors.add_column("reason")
        for r in failed:
            errors.add_row(r.input, r.error or "")
        console.print(errors)


# --------------------------------------------------------------------------- poolcli explain

CELL_STYLES = {
    "normal": "",
    "pad": "dim",
    "tap": "bold black on yellow",
    "pad_tap": "black on bright_black",
    "winner": "bold white on red",
    "result": "bold white on blue",
}


def explanation_panels(expl: Explanation, summary: bool) -> list[tuple[str, list[list[tuple[str, str]]], str]]:
    """The picture of an explanation as panels: (title, rows of (text, style key), caption).

    Shared by the terminal, SVG and PNG renderings so that they show the same thing.
    """
    panels = []
    for plane in expl.planes:
        panels.append((f"input {plane.label}", _padded_grid(expl, plane, None), _shape_caption(expl.input_shape)))
        if not summary:
            for cell in plane.cells:
                panels.append((f"{plane.label}: out[{cell.out_row}, {cell.out_col}] = {format_number(cell.value)}",
                               _padded_grid(expl, plane, cell), cell_explanation(expl, cell)))
        out_rows = [[(format_number(v.item()), "normal") for v in row] for row in plane.output]
        panels.append((f"output {plane.label}", out_rows, _shape_caption(expl.output_shape)))
    return panels


def _shape_caption(shape: tuple[int, ...]) -> str:
    order = "(N, C, H, W)" if len(shape) == 4 else "(C, H, W)"
    shown = shape if len(shape) != 2 else (1, *shape)
    return f"shape {shape_text(tuple(shown))} {order}"


def _padded_grid(expl: Explanation, plane: PlaneExplanation, cell: Cell | None) -> list[list[tuple[str, str]]]:
    """The input plane with its padding drawn, and the cells of ``cell``'s window marked."""
    height, width = plane.values.shape
    (top, bottom), (left, right) = expl.pad_rows, expl.pad_cols
    taps = {(t.row, t.col) for t in cell.taps} if cell is not None else set()
    winner = cell.winner if cell is not None and expl.params.op == "max" else None
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
            if (r, c) == winner and cell is not None and any(t.inside for t in cell.taps):
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
    if expl.params.op == "max":
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


def render_explanation(expl: Explanation, console: Console, summary: bool = False) -> None:
    """Print an explanation: arithmetic, then the panels, grids with their windows highlighted."""
    params = expl.params
    header = Table.grid(padding=(0, 2))
    header.add_column(style="cyan", justify="right")
    header.add_column()
    add_operation_rows(header, params, *expl.input_shape[-2:])
    if any(expl.pad_rows) or any(expl.pad_cols):
        header.add_row("padding", Text(f"padding cells are shown as {expl.pad_value}; · lies past the padding "
                                       "(ceil mode), where nothing counts", style="dim"))
    if not summary:
        marks = "[x]: the window's taps" + ("; [x]*: the maximum" if params.op == "max" else "")
        header.add_row("legend", Text(marks, style="dim"))
    console.print(header)
    for title, rows, caption in explanation_panels(expl, summary):
        console.print()
        console.print(Text(title, style="bold"))
        console.print(styled_grid(rows))
        console.print(Text(caption))


def styled_grid(rows: list[list[tuple[str, str]]]) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 1))
    for _ in range(len(rows[0]) if rows else 0):
        table.add_column(justify="right")
    for row in rows:
        table.add_row(*(Text(text, style=CELL_STYLES[style]) for text, style in row))
    return table
