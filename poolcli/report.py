"""What a run tells its user: the Rich report on stderr, the progress bar of a batch, and the JSON
line (with explain.render, the only modules that use Rich).

May import: NumPy and Rich (no Pillow or Click).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import numpy as np
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from poolcli.explain.model import format_number, labelled_planes
from poolcli.explain.render import add_operation_rows
from poolcli.params import PoolParams
from poolcli.results import Result, json_line, printable

__all__ = ["Result", "json_line", "make_console", "progress", "render", "work_progress"]

# At most this many planes (channels x batch) are drawn as grids.
GRID_PLANES = 4


def make_console(stream: IO[str] | None = None) -> Console:
    """A console on stderr: colour only on a terminal, never with NO_COLOR (Rich's own rules)."""
    return Console(file=stream, stderr=stream is None, highlight=False, soft_wrap=False)


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


class _Rows:
    """Labelled report rows, collected to be drawn as a table (terminal) or as plain lines."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, Text]] = []

    def add_row(self, label: str, text: Text) -> None:
        self.rows.append((label, text))

    def renderable(self, terminal: bool) -> Table | Text:
        if terminal:
            table = Table.grid(padding=(0, 2))
            table.add_column(style="cyan", justify="right")
            table.add_column()
            for label, text in self.rows:
                table.add_row(label, text)
            return table
        # Off a terminal: plain lines, no alignment padding; a row without a label continues the one above.
        lines = [Text(f"{label}: ").append_text(text) if label else Text("  ").append_text(text)
                 for label, text in self.rows]
        return Text("\n").join(lines)


def render(result: Result, params: PoolParams, console: Console) -> None:
    """Print the full (``--verbose``) report of one input."""
    if result.status == "error":
        console.print(Text.assemble(("error ", "bold red"), printable(f"{result.input}: {result.error}")))
        return
    if result.status == "skipped":
        console.print(Text.assemble(("skipped ", "yellow"),
                                    printable(f"{result.input}: {result.error or 'output exists'}")))
        return
    table = _Rows()
    frames = f", {result.frames} frames" if result.frames > 1 else ""
    table.add_row("input", Text("- (standard input)" if result.input == "-" else printable(result.input)))
    table.add_row("", Text(f"{result.description}, shape {shape_text(result.input_shape)} (C, H, W){frames}"))
    if result.full_input_shape and result.full_input_shape != result.input_shape:
        table.add_row("", Text(f"array shape {shape_text(result.full_input_shape)}"))
    if result.input_shape:
        add_operation_rows(table, params, *result.input_shape[-2:])
    shown = "- (standard output)" if result.output == "-" else printable(result.output or "(not written)")
    table.add_row("output", Text(shown))
    out_shape = shape_text(result.output_shape)
    full = result.full_output_shape
    written = f"{result.output_description}, " if result.output_description else ""
    table.add_row("", Text(f"{written}shape {out_shape} (C, H, W)" + (f", array shape {shape_text(full)}"
                                                            if full and full != result.output_shape else "")))
    for note in result.notes:
        table.add_row("note", Text(note, style="yellow"))
    table.add_row("time", Text(f"{result.seconds:.3f} s"))
    grids = None
    if result.input_values is not None and result.output_values is not None:
        grids = _value_grids(result.input_values, result.output_values)
    if console.is_terminal:
        console.print(Group(*(part for part in (table.renderable(True), grids) if part is not None)))
        return
    # Plain lines: never wrapped at the 80 columns Rich assumes, no trailing padding.
    console.print(table.renderable(False), soft_wrap=True)
    if grids is not None:
        with console.capture() as captured:
            console.print(grids)
        console.print("\n".join(line.rstrip() for line in captured.get().splitlines()), soft_wrap=True,
                      markup=False)


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


@contextlib.contextmanager
def progress(console: Console, total: int, done: int) -> Iterator[Callable[[], None]]:
    """A progress bar of files (count, rate, ETA) for a batch; yields the function that advances it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("pooling"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("pool", total=total, completed=done, rate="")
        started = time.perf_counter()
        count = 0

        def advance() -> None:
            nonlocal count
            count += 1
            rate = count / max(time.perf_counter() - started, 1e-9)
            bar.update(task, advance=1, rate=f"{rate:.1f} files/s")

        yield advance



@contextlib.contextmanager
def work_progress(console: Console, what: str) -> Iterator[Callable[[str, int, int], None]]:
    """Progress bars of one long job (a giant image's strips, a pyramid's rows of tiles per
    level): yields the :data:`poolcli.strips.Progress` callback, which adds a bar for each new
    task it hears of."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(f"{what} {{task.description}}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def step(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total)
            bar.update(tasks[task], completed=done, total=total)

        yield step
