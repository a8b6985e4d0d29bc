"""The report: arithmetic lines, parameter marks, grids, JSON."""

from __future__ import annotations

import io
import json

import numpy as np

from poolcli.engine import axis_arithmetic
from poolcli.explain.render import arithmetic_line, correction_note
from poolcli.params import PoolParams
from poolcli.report import Result, json_line, make_console, render


def text_of(renderable) -> str:
    console = make_console(io.StringIO())
    console.print(renderable)
    return console.file.getvalue()


def test_arithmetic_line_floor_and_ceil():
    assert arithmetic_line("H", axis_arithmetic(3, 2, 1)).plain == "H: floor((3 + 2*0 - 1*(2-1) - 1) / 1) + 1 = 2"
    corrected = axis_arithmetic(5, 2, 2, 1, 1, True)
    assert arithmetic_line("W", corrected).plain == "W: ceil((5 + 2*1 - 1*(2-1) - 1) / 2) + 1 = 4 - 1 = 3"
    assert correction_note("W", corrected).plain == (
        "W: the last window would start at 5, in the right padding, so it is dropped")
    assert correction_note("W", axis_arithmetic(5, 2, 2, 1, 1, False)) is None


def test_dilated_arithmetic():
    assert arithmetic_line("H", axis_arithmetic(10, 3, 2, 1, 2, False)).plain == (
        "H: floor((10 + 2*1 - 2*(3-1) - 1) / 2) + 1 = 4")


def test_render_shows_shapes_parameters_and_grids():
    params = PoolParams("max", (2, 2), (1, 1))
    x = np.arange(9.0).reshape(1, 3, 3)
    result = Result(input="m.npy", output="o.npy", description="array of float64",
                    input_shape=(1, 3, 3), output_shape=(1, 2, 2), input_values=x,
                    output_values=np.array([[[4.0, 5.0], [7.0, 8.0]]]), seconds=0.5)
    console = make_console(io.StringIO())
    render(result, params, console)
    text = console.file.getvalue()
    assert "array of float64, shape (1, 3, 3) (C, H, W)" in text
    assert "stride 1" in text and "default: the kernel" not in text  # stride given, not defaulted
    assert "dilation 1  (default)" in text
    assert "0.500 s" in text
    assert any(line.split() == ["6", "7", "8"] for line in text.splitlines())


def test_nan_and_inf_display():
    from poolcli.report import grid

    text = text_of(grid(np.array([[np.nan, np.inf, -np.inf, 1.5]])))
    assert text.split() == ["nan", "inf", "-inf", "1.5"]


def test_json_line_for_max_has_no_avg_parameters():
    record = json.loads(json_line(Result(input="a.png", output="b.png", input_shape=(3, 4, 4),
                                         output_shape=(3, 2, 2)), PoolParams("max", (2, 2), None, (0, 0), (2, 2))))
    assert record["dilation"] == [2, 2] and record["stride"] == [2, 2]
    assert record["count_include_pad"] is None and record["divisor_override"] is None
