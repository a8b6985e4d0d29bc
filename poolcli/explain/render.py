"""``poolcli explain`` on the terminal: the header (parameters, output-size arithmetic, legend)
and the panels, with the window's cells styled.

May import: Rich, and ``poolcli.report`` for the parameter and arithmetic rows it shares with the
pooling report (the report and this module are the only users of Rich).
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from poolcli.explain.model import STYLES, Explanation, Row, explanation_panels
from poolcli.report import add_operation_rows


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
