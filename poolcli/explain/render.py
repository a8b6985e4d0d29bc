"""``poolcli explain`` on the terminal: the header (parameters, output-size arithmetic, legend)
and the panels, with the window's cells styled.

The rows of the operation (every parameter and the output-size arithmetic of both axes) live here
and the pooling report (``poolcli.report``) draws them too.

May import: Rich (this module and the report are the only users of Rich).
"""

from __future__ import annotations

from typing import Protocol

from rich.console import Console
from rich.table import Table
from rich.text import Text

from poolcli.engine import AxisArithmetic, axis_arithmetic
from poolcli.explain.model import STYLES, Explanation, Row, explanation_panels
from poolcli.params import PoolParams, format_pair


def parameter_lines(params: PoolParams) -> list[Text]:
    """Every parameter, with the defaults that applied marked as such."""
    lines = [Text.assemble(("kernel_size ", "bold"), format_pair(params.kernel))]
    stride = Text.assemble(("stride ", "bold"), format_pair(params.effective_stride))
    if params.stride is None:
        stride.append("  (default: the kernel)", style="dim")
    lines.append(stride)

    def with_default(name: str, value: str, is_default: bool) -> Text:
        text = Text.assemble((f"{name} ", "bold"), value)
        if is_default:
            text.append("  (default)", style="dim")
        return text

    lines.append(with_default("padding", format_pair(params.padding), params.padding == (0, 0)))
    if params.spec.dilates:
        lines.append(with_default("dilation", format_pair(params.dilation), params.dilation == (1, 1)))
    lines.append(with_default("ceil_mode", str(params.ceil_mode), not params.ceil_mode))
    if params.spec.averages:
        lines.append(with_default("count_include_pad", str(params.count_include_pad), params.count_include_pad))
        override = "None" if params.divisor_override is None else str(params.divisor_override)
        lines.append(with_default("divisor_override", override, params.divisor_override is None))
    return lines


def arithmetic(params: PoolParams, height: int, width: int) -> list[AxisArithmetic]:
    stride = params.effective_stride
    dilation = params.effective_dilation
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


class RowSink(Protocol):
    """Whatever takes labelled rows: a Rich table grid, the report's rows, explain's header."""

    def add_row(self, label: str, text: Text, /) -> None: ...


def add_operation_rows(table: RowSink, params: PoolParams, height: int, width: int) -> None:
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


def header_rows(expl: Explanation, summary: bool = False) -> list[tuple[str, Text]]:
    """The header of an explanation as (label, text) rows: the operation, every parameter, the
    output-size arithmetic, and the padding, legend and planes notes.  The terminal prints them as
    a table; the SVG and PNG pictures (``picture``) draw their plain text."""
    rows: list[tuple[str, Text]] = []

    class _Collect:
        def add_row(self, label: str, text: Text) -> None:
            rows.append((label, text))

    add_operation_rows(_Collect(), expl.params, *expl.input_shape[-2:])
    if any(expl.pad_rows) or any(expl.pad_cols):
        rows.append(("padding", Text(f"padding cells are shown as {expl.pad_value}; · lies past the padding "
                                     "(ceil mode), where nothing counts", style="dim")))
    if not summary:
        marks = "[x]: the window's taps" + ("; [x]*: the maximum" if expl.params.spec.indices else "")
        rows.append(("legend", Text(marks, style="dim")))
    if expl.hidden_planes:
        rows.append(("planes", Text(f"{len(expl.planes)} explained, {expl.hidden_planes} more not: choose "
                                    "with --channel N", style="yellow")))
    return rows


def render_explanation(expl: Explanation, console: Console, summary: bool = False) -> None:
    """Print an explanation: the header, then the panels, grids with their windows highlighted."""
    header = Table.grid(padding=(0, 2))
    header.add_column(style="cyan", justify="right")
    header.add_column()
    for label, text in header_rows(expl, summary):
        header.add_row(label, text)
    console.print(header)
    for title, rows, caption in explanation_panels(expl, summary):
        console.print()
        console.print(Text(title, style="bold"))
        console.print(styled_grid(rows), soft_wrap=True)  # wider than the terminal: never cut or fold a row
        console.print(Text(caption))


def styled_grid(rows: list[Row]) -> Text:
    """The cells right-aligned in columns, one space either side (as a borderless Rich table
    lays them out, at a small part of its cost: explain prints hundreds of grids)."""
    widths = [max(len(row[c][0]) for row in rows) for c in range(len(rows[0]))] if rows else []
    text = Text(end="", no_wrap=True, overflow="ignore")
    for r, row in enumerate(rows):
        if r:
            text.append("\n")
        for (cell, style), width in zip(row, widths, strict=True):
            text.append(" " + " " * (width - len(cell)))
            text.append(cell, style=STYLES[style].rich)
            text.append(" ")
    return text
