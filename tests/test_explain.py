"""poolcli explain: the course example, padding, ceil mode, dilation, divisors, golden text, errors."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from PIL import Image

from poolcli.explain.matrix import parse_matrix
from poolcli.explain.model import explain
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
        ("[[1,2],[3]]", "row 2 has 1 values but row 1 has 2"),
        ("[[1,2],3]", "item 2 is a number but item 1 is a row"),
        ("[[1,2]", "the brackets do not pair up"),
        ("[[1,x]]", "'x' in the matrix is not a number"),
        ("tensor([[1,2]]) + 1", "is not a matrix literal: use rows of numbers in brackets"),
        ("[[[[[1]]]]]", "5 levels of brackets: explain takes at most 4"),
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


SVG = "{http://www.w3.org/2000/svg}"


def svg_texts(path: Path) -> tuple[ElementTree.Element, list[ElementTree.Element]]:
    root = ElementTree.parse(path).getroot()
    return root, list(root.iter(f"{SVG}text"))


def test_svg_and_png_are_one_picture(invoke, tmp_path):
    result = invoke("explain", "max", COURSE, "-k", "2", "-s", "1", "-p", "1", "--svg", "w.svg", "--png", "w.png")
    assert result.exit_code == 0
    root, texts = svg_texts(tmp_path / "w.svg")
    shown = [t.text for t in texts]
    with Image.open(tmp_path / "w.png") as img:
        assert img.format == "PNG" and img.size == (int(root.get("width")), int(root.get("height")))
        header = img.info["Description"].splitlines()
        # The header is drawn: ink in the PNG above the first grid, in the SVG as texts.
        first_grid_y = min(float(r.get("y")) for r in root.iter(f"{SVG}rect") if r.get("stroke"))
        assert img.convert("L").crop((0, 0, img.width, int(first_grid_y) - 30)).getextrema()[0] < 100
    # One header, the terminal's: the parameters and the output-size arithmetic, in both formats.
    assert header == [
        "operation: max_pool2d", "  kernel_size 2", "  stride 1", "  padding 1", "  dilation 1  (default)",
        "  ceil_mode False  (default)", "output size: H: floor((3 + 2*1 - 1*(2-1) - 1) / 1) + 1 = 4",
        "  W: floor((3 + 2*1 - 1*(2-1) - 1) / 1) + 1 = 4",
        "padding: padding cells are shown as -inf; · lies past the padding (ceil mode), where nothing counts",
        "legend: [x]: the window's taps; [x]*: the maximum"]
    assert root.find(f"{SVG}desc").text.splitlines() == header
    for line in header:
        label, _, text = line.partition(": ") if not line.startswith("  ") else ("", "", line[2:])
        assert text in shown and (not label or label in shown)
        assert flat(text) in flat(result.stdout)
    assert "channel 0: out[3, 3] = 8" in shown and "[8]*" in shown


def test_svg_is_self_contained_and_aligned_by_coordinates(invoke, tmp_path):
    result = invoke("explain", "avg", COURSE, "-k", "2", "-s", "1", "--svg", "w.svg")
    assert result.exit_code == 0
    svg = (tmp_path / "w.svg").read_text()
    rest = svg.replace('xmlns="http://www.w3.org/2000/svg"', "", 1)
    for word in ("http", "url(", "href", "@import", "@font-face", "<image", "<style", "<script"):
        assert word not in rest
    root, texts = svg_texts(tmp_path / "w.svg")
    assert root.get("font-family").endswith(", monospace")
    # The input grid: each column's numbers share one right edge, whatever the font's widths.
    start = [t.text for t in texts].index("input channel 0") + 1
    cells = {t.text: t for t in texts[start:start + 9]}
    assert {cells[v].get("text-anchor") for v in cells} == {"end"}
    assert cells["0"].get("x") == cells["3"].get("x") == cells["6"].get("x")
    assert cells["2"].get("x") == cells["5"].get("x") == cells["8"].get("x") != cells["0"].get("x")


@pytest.mark.parametrize("literal", [
    "[[0,1,2],[3,4,5],[6,7,8]]",
    "tensor([[0., 1., 2.],\n        [3., 4., 5.],\n        [6., 7., 8.]])",
    "np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]], dtype=np.float32)",
    "[[0 1 2]\n [3 4 5]\n [6 7 8]]",  # NumPy's print
])
def test_bracket_literals_are_the_course_matrix(invoke, literal):
    result = invoke("explain", "max", literal, "-k", "2", "-s", "1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == invoke("explain", "max", COURSE, "-k", "2", "-s", "1").stdout


def test_a_three_deep_literal_is_channels(invoke):
    result = invoke("explain", "max", "[[[1,2],[3,4]],[[5,6],[7,-inf]]]", "-k", "2", "--summary")
    assert result.exit_code == 0, result.stderr
    assert output_grid(result.stdout, "output channel 0") == [["4"]]
    assert output_grid(result.stdout, "output channel 1") == [["7"]]


def test_numbers_come_from_the_engine():
    expl = explain(parse_matrix("1e8 1; -1e8 1"), PoolParams("avg", (2, 2)))
    assert expl.planes[0].cells[0].value == 0.25  # torch's float32 order (docs/semantics.md T33), not exact math
    assert expl.planes[0].cells[0].total == 1.0


# --------------------------------------------------------------------------- bounds and refusals (issue 10)


def test_at_most_four_planes_by_default(invoke, tmp_path):
    np.save(tmp_path / "six.npy", np.arange(6 * 9, dtype=np.int16).reshape(6, 3, 3))
    result = invoke("explain", "max", "six.npy", "-k", "2", "-s", "1", "--summary")
    assert result.exit_code == 0
    assert output_grid(result.stdout, "output channel 3") == [["31", "32"], ["34", "35"]]
    assert "output channel 4" not in result.stdout
    assert "planes  4 explained, 2 more not: choose with --channel N" in result.stdout
    assert "shape (6, 2, 2) (C, H, W)" in result.stdout  # the whole output's shape


def test_channel_chooses_planes(invoke, tmp_path):
    np.save(tmp_path / "six.npy", np.arange(6 * 9, dtype=np.int16).reshape(6, 3, 3))
    result = invoke("explain", "max", "six.npy", "-k", "2", "-s", "1", "--channel", "5", "--channel", "0,4")
    assert result.exit_code == 0
    assert [line for line in result.stdout.splitlines() if line.startswith("output channel")] == [
        "output channel 0", "output channel 4", "output channel 5"]
    assert output_grid(result.stdout, "output channel 5") == [["49", "50"], ["52", "53"]]
    assert "channel 5: out[1, 1] = 53" in result.stdout and "more not" not in result.stdout


def test_channel_of_a_batch_takes_it_from_every_item(invoke, tmp_path):
    np.save(tmp_path / "b.npy", np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 2, 2))
    result = invoke("explain", "avg", "b.npy", "-k", "2", "--channel", "1", "--summary")
    assert result.exit_code == 0
    assert output_grid(result.stdout, "output batch 0, channel 1") == [["5.5"]]
    assert output_grid(result.stdout, "output batch 1, channel 1") == [["17.5"]]


@pytest.mark.parametrize(
    "channels, words",
    [
        (["--channel", "6"], "Invalid value for '--channel': the input has no channel 6: it has 6 channels (0 to 5)"),
        (["--channel", "0,1,2,3,4"], "5 planes chosen; explain shows at most 4 at once: choose fewer with --channel"),
        (["--channel", "x"], "Invalid value for '--channel': 'x' is not a channel number"),
    ],
)
def test_bad_channel_is_a_usage_error(invoke, tmp_path, channels, words):
    np.save(tmp_path / "six.npy", np.zeros((6, 3, 3), dtype=np.float32))
    result = invoke("explain", "max", "six.npy", "-k", "2", *channels)
    assert result.exit_code == 2
    assert words in result.stderr and result.stderr.count("\n") == 1


def test_windows_beyond_the_drawn_grid_are_refused(invoke):
    result = invoke("explain", "max", COURSE, "-k", "40", "-p", "20", "-s", "1")
    assert result.exit_code == 2
    assert ("the grid to draw (input, padding and windows) would be 43x43 cells (W x H); explain draws at most "
            "32x32: use a smaller -k/--kernel, -p/--padding or -d/--dilation") in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("option", ["--png", "--svg"])
def test_too_large_picture_is_refused_before_writing(invoke, tmp_path, option):
    np.save(tmp_path / "m.npy", np.arange(256.0).reshape(16, 16))
    result = invoke("explain", "max", "m.npy", "-k", "2", "-s", "1", option, "w.out")
    assert result.exit_code == 2
    kind = option[2:].upper()
    assert f"the {kind} picture would be " in result.stderr
    assert "at most 40 megapixels: use --summary, fewer planes (--channel N) or a smaller --crop" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npy"] and result.stdout == ""
    summary = invoke("explain", "max", "m.npy", "-k", "2", "-s", "1", "--summary", option, "w.out")
    assert summary.exit_code == 0 and (tmp_path / "w.out").stat().st_size > 0


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
@pytest.mark.parametrize("option", ["--png", "--svg"])
def test_picture_naming_the_input_is_a_usage_error(invoke, tmp_path, option, link):
    np.save(tmp_path / "m.npy", np.arange(9.0).reshape(3, 3))
    before = (tmp_path / "m.npy").read_bytes()
    target = "m.npy"
    if link == "symlink":
        (tmp_path / "alias.png").symlink_to(tmp_path / "m.npy")
        target = "alias.png"
    elif link == "hardlink":
        (tmp_path / "alias.png").hardlink_to(tmp_path / "m.npy")
        target = "alias.png"
    result = invoke("explain", "max", "m.npy", "-k", "2", option, target)
    assert result.exit_code == 2
    assert f"Invalid value for '{option}': {target} is the input MATRIX; explain never overwrites its input" \
        in result.stderr
    assert (tmp_path / "m.npy").read_bytes() == before and result.stdout == ""


def test_png_and_svg_naming_one_file_is_a_usage_error(invoke, tmp_path):
    result = invoke("explain", "max", COURSE, "-k", "2", "--svg", "w.pic", "--png", "./w.pic")
    assert result.exit_code == 2
    assert "Invalid value for '--png': --svg and --png both name ./w.pic: give two files" in result.stderr
    assert not (tmp_path / "w.pic").exists()


@pytest.mark.parametrize("command", [["explain", "avg", COURSE], ["avg", "m.npy"]], ids=["explain", "avg"])
@pytest.mark.parametrize("value", [str(2**63), str(-(2**63) - 1)])
def test_divisor_override_beyond_int64_is_a_usage_error(invoke, tmp_path, command, value):
    np.save(tmp_path / "m.npy", np.arange(9.0).reshape(3, 3))
    result = invoke(*command, "-k", "2", "--divisor-override", value)
    assert result.exit_code == 2
    assert "Invalid value for '--divisor-override'" in result.stderr and result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npy"]


def test_divisor_override_at_int64_limit_works(invoke):
    result = invoke("explain", "avg", COURSE, "-k", "2", "-s", "1", "--divisor-override", str(-(2**63)))
    assert result.exit_code == 0
    assert "divisor -9223372036854775808: divisor_override replaces every divisor" in flat(result.stdout)


def test_fifo_as_matrix_is_refused_without_blocking(tmp_path):
    """A real subprocess: reading a FIFO nobody writes to would block forever (the timeout only
    keeps a regression from hanging the suite)."""
    os.mkfifo(tmp_path / "pipe")
    result = subprocess.run([sys.executable, "-m", "poolcli", "explain", "max", str(tmp_path / "pipe"), "-k", "2"],
                            capture_output=True, text=True, timeout=60, env=_env())
    assert result.returncode == 1
    assert result.stderr == (f"poolcli: error: {tmp_path / 'pipe'}: is a FIFO (named pipe): explain reads MATRIX "
                             "from a regular file or a literal\n")


def test_device_as_matrix_is_refused(invoke):
    result = invoke("explain", "max", "/dev/zero", "-k", "2")
    assert result.exit_code == 1
    assert result.stderr == "poolcli: error: /dev/zero: is a device: explain reads MATRIX from a regular file or " \
                            "a literal\n"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files without permission")
def test_unreadable_matrix_file(invoke, tmp_path):
    np.save(tmp_path / "m.npy", np.zeros((2, 2)))
    (tmp_path / "m.npy").chmod(0)
    result = invoke("explain", "max", "m.npy", "-k", "2")
    assert result.exit_code == 1
    assert result.stderr == "poolcli: error: m.npy: Permission denied\n"


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc")
def test_file_that_fails_to_read_even_for_root(invoke):
    """/proc/self/mem is a regular file whose first page is unmapped: reading it fails with EIO."""
    result = invoke("explain", "max", "/proc/self/mem", "-k", "2")
    assert result.exit_code == 1
    assert result.stderr == "poolcli: error: /proc/self/mem: Input/output error\n"


def test_overflowing_literal_is_inf_without_a_warning():
    """A real subprocess: in-process, pytest would capture NumPy's RuntimeWarning."""
    result = subprocess.run([sys.executable, "-m", "poolcli", "explain", "max", "1e39 2; 3 4", "-k", "2"],
                            capture_output=True, text=True, timeout=60, env=_env())
    assert result.returncode == 0 and result.stderr == ""
    assert output_grid(result.stdout) == [["inf"]]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))


def test_wide_grids_are_never_cut_or_folded(invoke, tmp_path):
    """16 columns of 5-character numbers are wider than 80 columns: every row stays whole (Rich's
    table used to squeeze '[16]' into '[1…')."""
    np.save(tmp_path / "m.npy", np.arange(1000.0, 1256.0).reshape(16, 16))
    result = invoke("explain", "max", "m.npy", "-k", "2", "-s", "1", "--crop", "0,0,16,2")
    block = result.stdout.split("channel 0: out[0, 0] = 1017")[1].splitlines()
    assert block[1].split() == ["[1000]", "[1001]", *map(str, range(1002, 1016))]
    assert block[2].split() == ["[1016]", "[1017]*", *map(str, range(1018, 1032))]


def test_pictures_appear_together_or_not_at_all(invoke, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    result = invoke("explain", "max", COURSE, "-k", "2", "--svg", "w.svg", "--png", "file/w.png")
    assert result.exit_code == 1
    assert result.stderr == "poolcli: error: cannot write file/w.png: the folder file does not exist\n"
    assert ".part" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the SVG written first is gone


def test_picture_to_a_device_is_written_through(invoke):
    result = invoke("explain", "max", COURSE, "-k", "2", "--png", "/dev/null", "--svg", "/dev/null")
    assert result.exit_code == 2  # one file named twice
    result = invoke("explain", "max", COURSE, "-k", "2", "--png", "/dev/null")
    assert result.exit_code == 0 and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_error_naming_a_file_with_a_new_line_is_one_line(invoke, tmp_path):
    (tmp_path / "two\nlines.npy").write_bytes(b"\x93NUMPY\x01")
    result = invoke("explain", "max", "two\nlines.npy", "-k", "2")
    assert result.exit_code == 1
    assert result.stderr == "poolcli: error: two\\nlines.npy: damaged .npy header (EOF: reading magic string, " \
                            "expected 8 bytes got 7)\n"
