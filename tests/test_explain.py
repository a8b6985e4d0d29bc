"""poolcli explain: the course example, padding, ceil mode, dilation, divisors, golden text, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from poolcli.explain import explain, parse_matrix
from poolcli.params import PoolParams

GOLDEN = Path(__file__).parent / "data" / "explain_course_max.txt"
COURSE = "0 1 2; 3 4 5; 6 7 8"


def flat(text: str) -> str:
    """Whitespace folded: the report wraps long lines at the console width."""
    return " ".join(text.split())


def output_grid(text: str, label: str = "output channel 0") -> list[list[str]]:
    lines = text.splitlines()
    start = lines.index(label) + 1
    rows = []
    for line in lines[start:]:
        if line.startswith("shape"):
            break
        rows.append(line.split())
    return rows


def test_course_example_max(invoke):
    result = invoke("explain", "max", COURSE, "-k", "2", "-s", "1")
    assert result.exit_code == 0
    assert output_grid(result.stdout) == [["4", "5"], ["7", "8"]]
    assert "shape (1, 2, 2) (C, H, W)" in result.stdout
    assert "max(0, 1, 3, 4) = 4, at input row 1, col 1" in result.stdout


def test_course_example_avg(invoke):
    result = invoke("explain", "avg", COURSE, "-k", "2", "-s", "1")
    assert result.exit_code == 0
    assert output_grid(result.stdout) == [["2", "3"], ["5", "6"]]
    assert "(0 + 1 + 3 + 4) / 4 = 8 / 4 = 2; divisor 4: the window's 4 cells" in result.stdout


def test_golden_text_of_the_course_example(invoke):
    """The whole text, as a user sees it piped (no colour, 80 columns).  After an intended change,
    regenerate it with:
    poolcli explain max "0 1 2; 3 4 5; 6 7 8" -k 2 -s 1 --indices > tests/data/explain_course_max.txt"""
    result = invoke("explain", "max", COURSE, "-k", "2", "-s", "1", "--indices")
    assert result.exit_code == 0
    assert result.stdout == GOLDEN.read_text()


def test_windows_are_marked_without_colour(invoke):
    result = invoke("explain", "max", COURSE, "-k", "2", "-s", "1")
    assert "\x1b[" not in result.stdout
    second_row = result.stdout.split("out[0, 1] = 5")[1].splitlines()[2].split()
    assert second_row == ["3", "[4]", "[5]*"]


def test_padding_with_and_without_count_include_pad(invoke):
    on = invoke("explain", "avg", COURSE, "-k", "3", "-s", "1", "-p", "1")
    assert "(0 + 1 + 3 + 4) / 9 = 8 / 9 = 0.888889; divisor 9: all 9 cells count, padding included" in flat(on.stdout)
    assert "padding cells are shown as 0" in on.stdout
    off = invoke("explain", "avg", COURSE, "-k", "3", "-s", "1", "-p", "1", "--no-count-include-pad")
    assert "(0 + 1 + 3 + 4) / 4 = 8 / 4 = 2; divisor 4: only the 4 cells inside the input count" in flat(off.stdout)
    assert output_grid(off.stdout) == [["2", "2.5", "3"], ["3.5", "4", "4.5"], ["5", "5.5", "6"]]


def test_ceil_mode_clipped_window(invoke):
    result = invoke("explain", "avg", COURSE, "-k", "2", "-s", "2", "--ceil-mode")
    assert "H: ceil((3 + 2*0 - 1*(2-1) - 1) / 2) + 1 = 2" in result.stdout
    assert "(8) / 1 = 8 / 1 = 8; divisor 1: 1 of the window's 4 cells lie within the padded input; the 3 past " \
           "the right padding (ceil mode) never count" in flat(result.stdout)
    assert output_grid(result.stdout) == [["2", "3.5"], ["6.5", "8"]]  # docs/semantics.md T4


def test_ceil_correction_is_explained(invoke):
    result = invoke("explain", "max", "0 1 2 3 4; 5 6 7 8 9; 10 11 12 13 14; 15 16 17 18 19; 20 21 22 23 24",
                    "-k", "2", "-s", "2", "-p", "1", "--ceil-mode", "--summary")
    text = flat(result.stdout)
    assert "H: ceil((5 + 2*1 - 1*(2-1) - 1) / 2) + 1 = 4 - 1 = 3" in text
    assert "H: the last window would start at 5, in the right padding, so it is dropped" in text
    assert output_grid(result.stdout) == [["0", "2", "4"], ["10", "12", "14"], ["20", "22", "24"]]  # semantics T7
    assert "out[" not in result.stdout  # --summary: grids and arithmetic only


def test_dilation_marks_only_the_taps(invoke):
    result = invoke("explain", "max", "0 1 2 3; 4 5 6 7; 8 9 10 11; 12 13 14 15", "-k", "2", "-s", "1", "-p", "1",
                    "-d", "2", "--indices")
    block = result.stdout.split("out[0, 0] = 5")[1].split("\n\n")[0]
    marked = [cell for line in block.splitlines()[1:5] for cell in line.split() if cell.startswith("[")]
    assert marked == ["[-inf]", "[-inf]", "[-inf]", "[5]*"]  # taps at -1 and +1 only: docs/semantics.md T16
    assert "index 1*4 + 1 = 5" in block


def test_divisor_override_and_negative(invoke):
    result = invoke("explain", "avg", COURSE, "-k", "2", "-s", "1", "--divisor-override", "-2")
    assert "(0 + 1 + 3 + 4) / -2 = 8 / -2 = -4; divisor -2: divisor_override replaces every divisor" in flat(
        result.stdout)


def test_nan_and_inf_are_shown(invoke):
    result = invoke("explain", "max", "1 nan; inf -inf", "-k", "2")
    assert "max(1, nan, inf, -inf) = nan" in result.stdout
    assert "a NaN always wins" in result.stdout


def test_channels_are_explained_one_after_another(invoke, tmp_path):
    np.save(tmp_path / "m.npy", np.arange(18.0).reshape(2, 3, 3))
    result = invoke("explain", "max", "m.npy", "-k", "2", "-s", "1", "--summary")
    assert output_grid(result.stdout, "output channel 0") == [["4", "5"], ["7", "8"]]
    assert output_grid(result.stdout, "output channel 1") == [["13", "14"], ["16", "17"]]
    assert "shape (2, 2, 2) (C, H, W)" in result.stdout


def test_image_with_crop(invoke, tmp_path):
    pixels = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30)
    Image.fromarray(pixels).save(tmp_path / "g.png")
    result = invoke("explain", "max", "g.png", "--crop", "2,3,4,4", "-k", "2", "--summary")
    assert result.exit_code == 0
    crop = pixels[3:7, 2:6]
    expected = crop.reshape(2, 2, 2, 2).max(axis=(1, 3))
    assert output_grid(result.stdout) == [[str(v) for v in row] for row in expected.tolist()]


def test_large_input_needs_crop(invoke, tmp_path):
    np.save(tmp_path / "big.npy", np.zeros((20, 20)))
    result = invoke("explain", "max", "big.npy", "-k", "2")
    assert result.exit_code == 2
    assert "the input is 20x20 (W x H); explain shows at most 16x16 values: choose a part with --crop" in result.stderr


@pytest.mark.parametrize(
    "matrix, words",
    [
        ("1 2 3; 4 5", "row 2 has 2 values but row 1 has 3"),
        ("1 2; 3 x", "'x' in row 2 is not a number"),
        ("hello", "neither a matrix literal"),
        ("1 2; three 4", "'three' in row 2 is not a number"),
    ],
)
def test_bad_literals_exit_2(invoke, matrix, words):
    result = invoke("explain", "max", matrix, "-k", "2")
    assert result.exit_code == 2
    assert words in result.stderr and result.stderr.count("\n") == 1


def test_too_small_output_is_torch_s_error(invoke):
    result = invoke("explain", "max", COURSE, "-k", "4")
    assert result.exit_code == 1
    assert "Given input size: (1x3x3). Calculated output size: (1x0x0). Output size is too small" in result.stderr


def test_svg_and_png(invoke, tmp_path):
    result = invoke("explain", "max", COURSE, "-k", "2", "-s", "1", "--svg", "w.svg", "--png", "w.png")
    assert result.exit_code == 0
    svg = (tmp_path / "w.svg").read_text()
    assert svg.startswith("<svg") and "out[1,&#160;1]&#160;=&#160;8" in svg
    with Image.open(tmp_path / "w.png") as img:
        assert img.format == "PNG" and img.width > 400


def test_numbers_come_from_the_engine():
    expl = explain(parse_matrix("1e8 1; -1e8 1"), PoolParams("avg", (2, 2)))
    assert expl.planes[0].cells[0].value == 0.25  # torch's float32 order (docs/semantics.md T33), not exact math
    assert expl.planes[0].cells[0].total == 1.0
