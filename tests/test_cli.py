"""The poolcli command: options, reports, exit codes, errors (Click's CliRunner), and real pipes
(subprocesses)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import files_in, json_lines

JSON_KEYS = ["input", "output", "op", "input_shape", "output_shape", "kernel_size", "stride", "padding",
             "dilation", "ceil_mode", "count_include_pad", "divisor_override", "status", "error", "seconds", "notes"]


# --------------------------------------------------------------------------- the course example


def test_course_example_max(invoke, course, tmp_path):
    result = invoke("max", str(course), "-k", "2", "-s", "1", "-v")
    assert result.exit_code == 0
    out = np.load(tmp_path / "course.max-k2-s1.npy")
    assert out.dtype == np.float32 and out.shape == (1, 2, 2)
    assert out.tolist() == [[[4, 5], [7, 8]]]
    report = result.stderr
    assert "shape (1, 3, 3) (C, H, W)" in report
    assert "shape (1, 2, 2) (C, H, W)" in report
    assert "H: floor((3 + 2*0 - 1*(2-1) - 1) / 1) + 1 = 2" in report
    # the grids: the input 0..8 and the output 4 5 / 7 8
    lines = [line.split() for line in report.splitlines()]
    assert ["0", "1", "2", "→", "4", "5"] in lines
    assert ["3", "4", "5", "7", "8"] in lines


def test_course_example_avg(invoke, course, tmp_path):
    result = invoke("avg", str(course), "-k", "2", "-s", "1", "--verbose")
    assert result.exit_code == 0
    assert np.load(tmp_path / "course.avg-k2-s1.npy").tolist() == [[[2, 3], [5, 6]]]
    lines = [line.split() for line in result.stderr.splitlines()]
    assert ["0", "1", "2", "→", "2", "3"] in lines


def test_report_marks_defaults_and_has_no_colour_off_a_terminal(invoke, course):
    result = invoke("avg", str(course), "-k", "2", "-v")
    report = result.stderr
    assert "stride 2  (default: the kernel)" in report
    assert "padding 0  (default)" in report
    assert "count_include_pad True  (default)" in report
    assert "divisor_override None  (default)" in report
    assert "\x1b[" not in report


def test_report_shows_the_ceil_correction(invoke, tmp_path):
    np.save(tmp_path / "m.npy", np.arange(25.0).reshape(5, 5))
    result = invoke("max", "m.npy", "-k", "2", "-s", "2", "-p", "1", "--ceil-mode", "-v")
    assert result.exit_code == 0
    assert "H: ceil((5 + 2*1 - 1*(2-1) - 1) / 2) + 1 = 4 - 1 = 3" in result.stderr
    assert "H: the last window would start at 5, in the right padding" in result.stderr
    assert np.load(tmp_path / "m.max-k2-p1-ceil.npy").tolist() == [[0, 2, 4], [10, 12, 14], [20, 22, 24]]


def test_arrays_follow_torch_exactly(invoke, tmp_path):
    np.save(tmp_path / "i.npy", np.array([[[-3, 0, 3, 0]]], dtype=np.int64))
    assert invoke("avg", "i.npy", "-k", "1,2", "-o", "o.npy").exit_code == 0
    assert np.load(tmp_path / "o.npy").tolist() == [[[-1, 1]]]  # truncates toward zero
    np.save(tmp_path / "u.npy", np.array([[1, 2], [3, 5]], dtype=np.uint8))
    assert invoke("avg", "u.npy", "-k", "2", "-o", "u2.npy", "-q").exit_code == 0
    out = np.load(tmp_path / "u2.npy")
    assert out.dtype == np.uint8 and out.tolist() == [[2]]  # 11 / 4 truncated, like int64


def test_batched_array(invoke, tmp_path):
    x = np.arange(2 * 3 * 4 * 4, dtype=np.float64).reshape(2, 3, 4, 4)
    np.save(tmp_path / "b.npy", x)
    result = invoke("max", "b.npy", "-k", "2", "-o", "o.npy", "--json")
    assert result.exit_code == 0
    record = json_lines(result.stdout)[0]
    assert record["input_shape"] == [3, 4, 4] and record["output_shape"] == [3, 2, 2]
    assert np.load(tmp_path / "o.npy").shape == (2, 3, 2, 2)


# --------------------------------------------------------------------------- options and usage errors


@pytest.mark.parametrize(
    "args, option, words",
    [
        (["-k", "0"], "'-k/--kernel'", "the kernel must be at least 1, got 0"),
        (["-k", "2", "-s", "0"], "'-s/--stride'", "the stride must be at least 1, got 0"),
        (["-k", "3", "-p", "2"], "'-p/--padding'", "padding 2 is more than half the kernel 3"),
        (["-k", "3", "-p", "-1"], "'-p/--padding'", "must not be negative"),
        (["-k", "2", "-d", "0"], "'-d/--dilation'", "the dilation must be at least 1, got 0"),
        (["-k", "2,a"], "'-k' / '--kernel'", "is not a size"),
        (["-k", "2", "-p", "1,2,3"], "'-p' / '--padding'", "is not a size"),
        (["-k", "3000000000"], "'-k/--kernel'", "too large"),
    ],
)
def test_parameters_are_checked_before_reading_files(invoke, args, option, words):
    result = invoke("max", "does-not-exist.png", *args)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1  # one line
    assert option in result.stderr and words in result.stderr
    assert "does-not-exist" not in result.stderr


def test_divisor_override_zero_is_a_usage_error(invoke, course):
    result = invoke("avg", str(course), "-k", "2", "--divisor-override", "0")
    assert result.exit_code == 2
    assert "'--divisor-override'" in result.stderr and "must not be zero" in result.stderr


def test_sizes_accept_h_w_and_hxw(invoke, tmp_path):
    np.save(tmp_path / "m.npy", np.arange(24.0).reshape(4, 6))
    assert invoke("max", "m.npy", "-k", "2,3", "-o", "a.npy", "-q").exit_code == 0
    assert invoke("max", "m.npy", "-k", "2x3", "-o", "b.npy", "-q").exit_code == 0
    assert np.load(tmp_path / "a.npy").tolist() == [[8, 11], [20, 23]]
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_max_only_and_avg_only_options(invoke, course):
    dilated_average = invoke("avg", str(course), "-k", "2", "-d", "2")
    assert dilated_average.exit_code == 2
    assert re.search(r"No such option:? '?-d\b", dilated_average.stderr)  # the refused option is named
    overridden_max = invoke("max", str(course), "-k", "2", "--divisor-override", "2")
    assert overridden_max.exit_code == 2
    assert re.search(r"No such option:? '?--divisor-override\b", overridden_max.stderr)


def test_help_has_examples_and_version_works(invoke):
    result = invoke("max", "--help")
    assert result.exit_code == 0 and "Examples:" in result.stdout and "--return-indices" in result.stdout
    assert "--linear" in invoke("avg", "--help").stdout
    version = invoke("--version")
    assert version.exit_code == 0 and version.stdout.startswith("poolcli, version ")


def test_kernel_larger_than_padded_input_is_a_runtime_error(invoke, course, tmp_path):
    result = invoke("max", str(course), "-k", "5")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"poolcli: error: {course}: kernel 5 does not fit the (1, 3, 3) array (C, H, W) (padding 0): "
        "the output would be (1, 0, 0); use -k 3 or less, or --ceil-mode / -p")
    assert files_in(tmp_path) == ["course.npy"]


def test_window_larger_than_an_image_explains_itself(invoke, tmp_path):
    Image.new("RGB", (512, 600)).save(tmp_path / "cat.png")
    result = invoke("max", "cat.png", "-k", "1000")
    assert result.exit_code == 1
    assert result.stderr == ("poolcli: error: cat.png: kernel 1000 does not fit the 512x600 image (padding 0): "
                             "the output would be 0x0; use -k 512 or less, or --ceil-mode / -p\n")
    result = invoke("max", "cat.png", "-k", "700,600", "-d", "2", "-p", "1")
    assert result.stderr == ("poolcli: error: cat.png: kernel 700,600 with dilation 2 does not fit the 512x600 "
                             "image (padding 1): the output would be 0x0; use -k 301,257 or less, "
                             "or --ceil-mode / -p\n")
    assert files_in(tmp_path) == ["cat.png"]


def test_return_indices(invoke, tmp_path):
    np.save(tmp_path / "m.npy", np.array([[[0, 255, 3], [7, 8, 200], [1, 2, 9]]], dtype=np.uint8))
    result = invoke("max", "m.npy", "-k", "2", "-s", "1", "-p", "1", "--return-indices", "idx.npy", "-q")
    assert result.exit_code == 0
    indices = np.load(tmp_path / "idx.npy")
    assert indices.dtype == np.int64
    assert indices[0].tolist() == [[0, 1, 1, 2], [3, 1, 1, 5], [3, 4, 5, 5], [6, 7, 8, 8]]


def test_return_indices_needs_one_input(invoke, course, rgb_png):
    result = invoke("max", str(course), str(rgb_png), "-k", "2", "-o", "out", "--return-indices", "i.npy")
    assert result.exit_code == 2 and "--return-indices takes a single input" in result.stderr


# --------------------------------------------------------------------------- JSON


def test_json_line_has_exactly_the_documented_keys(invoke, rgb_png):
    result = invoke("avg", str(rgb_png), "-k", "3", "-s", "2", "-p", "1", "--json")
    assert result.exit_code == 0
    (record,) = json_lines(result.stdout)
    assert list(record) == JSON_KEYS
    assert record["input"] == str(rgb_png)
    assert record["output"] == str(rgb_png.with_name("rgb.avg-k3-s2-p1.png"))
    assert record["op"] == "avg"
    assert record["input_shape"] == [3, 40, 60] and record["output_shape"] == [3, 20, 30]
    assert record["kernel_size"] == [3, 3] and record["stride"] == [2, 2] and record["padding"] == [1, 1]
    assert record["count_include_pad"] is True and record["divisor_override"] is None
    assert record["status"] == "ok" and record["error"] is None and record["seconds"] >= 0
    assert result.stderr == ""  # --json replaces the report


def test_json_error_record(invoke, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    result = invoke("max", "bad.png", "-k", "2", "--json")
    assert result.exit_code == 1
    (record,) = json_lines(result.stdout)
    assert record["status"] == "error" and record["output"] is None
    assert record["error"] == "not an image file Pillow can read"


# --------------------------------------------------------------------------- bad input, nothing lost


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.png", b"", "empty file"),
        ("text.png", b"hello, I am text", "not an image file Pillow can read"),
        ("trunc.png", None, "damaged PNG file (the image data ends after 1 of 40 rows)"),
        ("garbage.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 64, "damaged JPEG header (Pillow cannot read it)"),
    ],
)
def test_bad_files_exit_1_with_one_line_and_no_output(invoke, tmp_path, rgb_png, name, content, reason):
    path = tmp_path / name
    path.write_bytes(rgb_png.read_bytes()[:300] if content is None else content)
    rgb_png.unlink()
    result = invoke("avg", name, "-k", "2")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"poolcli: error: {name}: ")
    assert reason in lines[0]
    assert "Traceback" not in result.stderr
    assert files_in(tmp_path) == [name]


def test_missing_file(invoke, tmp_path):
    result = invoke("max", "nope.png", "-k", "2")
    assert result.exit_code == 1
    assert result.stderr.strip() == "poolcli: error: nope.png: no such file"


def test_input_is_never_overwritten(invoke, rgb_png):
    before = rgb_png.read_bytes()
    result = invoke("max", str(rgb_png), "-k", "2", "-o", str(rgb_png))
    assert result.exit_code == 2 and "refusing to overwrite the input" in result.stderr
    assert rgb_png.read_bytes() == before


def test_several_inputs_go_to_a_folder(invoke, tmp_path, rgb_png, course):
    result = invoke("max", str(rgb_png), str(course), "-k", "2", "-o", "out", "-q")
    assert result.exit_code == 0
    assert files_in(tmp_path / "out") == ["course.npy", "rgb.png"]


def test_unknown_output_extension_leaves_no_file(invoke, tmp_path, rgb_png):
    np.save(tmp_path / "f.npy", np.zeros((2, 2)))
    result = invoke("avg", str(rgb_png), "-k", "2", "-o", "x.xyz")
    assert result.exit_code == 1 and "unknown output extension '.xyz'" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npy", "rgb.png"]


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_leaves_no_temporary_file(tmp_path, failure):
    from poolcli.pipeline import atomic_write

    target = tmp_path / "out.png"
    target.write_bytes(b"the previous output")

    def write(handle):
        handle.write(b"half an image")
        raise failure

    with pytest.raises(type(failure)):
        atomic_write(str(target), write)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no .part file left behind
    assert target.read_bytes() == b"the previous output"  # replaced whole or not at all


def test_float_pixels_cannot_go_to_png(invoke, tmp_path, rng):
    Image.fromarray(rng.random((8, 8), dtype=np.float32), mode="F").save(tmp_path / "f.tif")
    result = invoke("avg", "f.tif", "-k", "2", "-o", "f.png")
    assert result.exit_code == 1
    assert "cannot write 32-bit float (F) pixels as PNG; formats that can: TIFF, .npy" in result.stderr
    assert not (tmp_path / "f.png").exists()


def test_decompression_bomb_limit(invoke, tmp_path):
    Image.new("L", (100, 100)).save(tmp_path / "big.png")
    result = invoke("max", "big.png", "-k", "2", "--max-pixels", "5000")
    assert result.exit_code == 1
    assert "exceeds the limit of 5000 pixels" in result.stderr and "--max-pixels" in result.stderr
    assert invoke("max", "big.png", "-k", "2", "--max-pixels", "10000", "-q").exit_code == 0


# --------------------------------------------------------------------------- images through the CLI


def test_avg_k2_equals_pillow_reduce(invoke, rgb_png):
    assert invoke("avg", str(rgb_png), "-k", "2", "-q").exit_code == 0
    ours = np.asarray(Image.open(rgb_png.with_name("rgb.avg-k2.png")))
    theirs = np.asarray(Image.open(rgb_png).reduce(2))
    assert np.array_equal(ours, theirs)


def test_image_to_npy_gives_chw_pixels(invoke, rgb_png, tmp_path):
    assert invoke("max", str(rgb_png), "-k", "2", "-o", "px.npy", "-q").exit_code == 0
    planes = np.load(tmp_path / "px.npy")
    pixels = np.asarray(Image.open(rgb_png)).transpose(2, 0, 1)
    expected = pixels.reshape(3, 20, 2, 30, 2).max(axis=(2, 4))
    assert planes.dtype == np.uint8 and np.array_equal(planes, expected)


def test_quality_and_format(invoke, rgb_png, tmp_path):
    assert invoke("max", str(rgb_png), "-k", "2", "-o", "a.jpg", "--quality", "40", "-q").exit_code == 0
    assert invoke("max", str(rgb_png), "-k", "2", "-o", "b.jpg", "--quality", "95", "-q").exit_code == 0
    assert (tmp_path / "a.jpg").stat().st_size < (tmp_path / "b.jpg").stat().st_size
    assert invoke("max", str(rgb_png), "-k", "2", "-o", "c.out", "--format", "webp", "-q").exit_code == 0
    assert Image.open(tmp_path / "c.out").format == "WEBP"


# --------------------------------------------------------------------------- real pipes


def poolcli(*args: str, data: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "poolcli", *args], input=data, capture_output=True, cwd=cwd,
                          timeout=120, check=False)


def test_pipeline_through_stdin_and_stdout(rgb_png, tmp_path):
    first = poolcli("max", "-", "-k", "2", "-o", "-", data=rgb_png.read_bytes())
    assert first.returncode == 0, first.stderr
    second = poolcli("avg", "-", "-k", "2", "-o", "-", data=first.stdout)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith(b"\x89PNG")  # the input's format is kept
    img = Image.open(__import__("io").BytesIO(second.stdout))
    assert img.size == (15, 10)
    assert first.stderr == b"stdin 60x40 RGB 8-bit -> stdout 30x20  max k2  " + first.stderr[-7:]  # on stderr
    assert first.stderr.endswith(b" s\n")


def test_stdin_defaults_to_stdout_and_format_switches(rgb_png):
    out = poolcli("max", "-", "-k", "2", "--format", "jpeg", "-q", data=rgb_png.read_bytes())
    assert out.returncode == 0 and out.stdout.startswith(b"\xff\xd8") and out.stderr == b""


def test_stdin_npy_is_sniffed(course):
    out = poolcli("avg", "-", "-k", "2", "-s", "1", "-q", data=course.read_bytes())
    assert out.returncode == 0
    assert np.load(__import__("io").BytesIO(out.stdout)).tolist() == [[[2, 3], [5, 6]]]


def test_json_goes_to_stderr_when_the_image_goes_to_stdout(rgb_png):
    out = poolcli("max", "-", "-k", "2", "-o", "-", "--json", data=rgb_png.read_bytes())
    assert out.returncode == 0 and out.stdout.startswith(b"\x89PNG")
    assert json_lines(out.stderr.decode())[0]["status"] == "ok"


def test_empty_stdin_is_an_error():
    out = poolcli("max", "-", "-k", "2", data=b"")
    assert out.returncode == 1 and out.stderr.decode().strip() == "poolcli: error: -: standard input is empty"
    assert out.stdout == b""


# --------------------------------------------------------------------------- the remaining options


def test_import_poolcli_loads_no_cli_libraries():
    code = ("import sys, poolcli; import numpy as np; poolcli.max_pool2d(np.zeros((1, 2, 2)), 2); "
            "print(sorted(m for m in ('click', 'rich', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_and_version_load_neither_numpy_nor_pillow():
    code = ("import sys\nfrom poolcli.cli import cli\nsys.argv = ['poolcli', '--help']\ntry:\n    cli.main()\n"
            "except SystemExit:\n    pass\nprint(sorted(m for m in ('numpy', 'PIL', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_linear_and_premultiply_options(invoke, tmp_path):
    gray = np.array([[0, 255], [0, 255]], dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    assert invoke("avg", "g.png", "-k", "2", "--linear", "-o", "lin.png", "-q").exit_code == 0
    assert np.asarray(Image.open(tmp_path / "lin.png")).tolist() == [[188]]
    rgba = np.array([[[255, 0, 0, 255], [0, 255, 0, 0]], [[0, 255, 0, 0], [0, 255, 0, 0]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert invoke("avg", "a.png", "-k", "2", "-o", "pre.png", "-q").exit_code == 0
    assert invoke("avg", "a.png", "-k", "2", "--no-premultiply", "-o", "raw.png", "-q").exit_code == 0
    assert np.asarray(Image.open(tmp_path / "pre.png")).tolist() == [[[255, 0, 0, 64]]]
    assert np.asarray(Image.open(tmp_path / "raw.png")).tolist() == [[[64, 191, 0, 64]]]


def test_linear_refuses_float_pixels(invoke, tmp_path, rng):
    Image.fromarray(rng.random((4, 4), dtype=np.float32), mode="F").save(tmp_path / "f.tif")
    result = invoke("avg", "f.tif", "-k", "2", "--linear")
    assert result.exit_code == 1 and "--linear needs sRGB pixels" in result.stderr


def test_no_auto_orient(invoke, tmp_path, rng):
    img = Image.fromarray(rng.integers(0, 256, (4, 8, 3), dtype=np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "o.png", exif=exif)
    assert invoke("max", "o.png", "-k", "2", "-o", "turned.png", "-q").exit_code == 0
    assert invoke("max", "o.png", "-k", "2", "-o", "kept.png", "-q", "--no-auto-orient").exit_code == 0
    assert Image.open(tmp_path / "turned.png").size == (2, 4)
    assert Image.open(tmp_path / "kept.png").size == (4, 2)
    assert Image.open(tmp_path / "kept.png").getexif()[0x0112] == 6


def test_progress_bar_on_a_terminal_and_no_progress(invoke, tmp_path, rgb_png, course, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")  # Rich then treats stderr as a terminal
    shown = invoke("max", str(rgb_png), str(course), "-k", "2", "-o", "a", "-j", "1")
    assert shown.exit_code == 0 and "pooling" in shown.stderr
    hidden = invoke("max", str(rgb_png), str(course), "-k", "2", "-o", "b", "-j", "1", "--no-progress")
    assert hidden.exit_code == 0 and "pooling" not in hidden.stderr


def test_binary_output_to_a_terminal_is_refused(invoke, rgb_png, monkeypatch):
    import poolcli.cli

    monkeypatch.setattr(poolcli.cli, "_stdout_is_terminal", lambda: True)
    result = invoke("max", str(rgb_png), "-k", "2", "-o", "-")
    assert result.exit_code == 2
    assert "refusing to write image data to a terminal" in result.stderr


def test_32bit_integer_pixels_go_to_16bit_png_only_when_they_fit(invoke, tmp_path):
    small = np.arange(40 * 60, dtype=np.int32).reshape(40, 60)
    Image.fromarray(small).save(tmp_path / "small.tif")
    Image.fromarray(small * 40).save(tmp_path / "large.tif")  # values up to 95960
    assert invoke("max", "small.tif", "-k", "2", "-o", "small.png", "-q").exit_code == 0
    out = Image.open(tmp_path / "small.png")
    assert out.mode == "I;16" and np.asarray(out)[0, :3].tolist() == [61, 63, 65]
    result = invoke("max", "large.tif", "-k", "2", "-o", "large.png")
    assert result.exit_code == 1 and "cannot write 32-bit integer (I) pixels as PNG" in result.stderr
