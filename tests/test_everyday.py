"""Everyday use: the one-line report, help, settings from the environment, completion,
compression, the image API, and start-up that imports only what one file needs."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import poolcli
from poolcli.brief import interrupted_line
from tests.conftest import files_in

ROOT = Path(__file__).resolve().parents[1]


def poolcli_process(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                    ) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "poolcli", *args], capture_output=True, text=True, cwd=cwd,
                          env=full_env, timeout=120, check=False)


@pytest.fixture
def turned_palette_png(tmp_path) -> Path:
    """A 6x4 palette PNG whose EXIF says 'rotate 90° clockwise' (orientation 6)."""
    img = Image.new("P", (6, 4))
    img.putpalette([0, 0, 0, 255, 255, 255] * 128)
    exif = img.getexif()
    exif[0x0112] = 6
    path = tmp_path / "cat.png"
    img.save(path, exif=exif)
    return path


# --------------------------------------------------------------------------- the one-line report


def test_default_report_is_one_line_per_image_with_its_notes(invoke, turned_palette_png):
    result = invoke("max", "cat.png", "-k", "2")
    assert result.exit_code == 0
    first, *notes = result.stderr.splitlines()
    # EXIF orientation 6 turns 6x4 into 4x6; P is pooled as RGB
    assert first.startswith("cat.png 4x6 RGB 8-bit -> cat.max-k2.png 2x3  max k2  ")
    assert first.endswith(" s") and float(first.split()[-2]) >= 0
    assert notes == ["note: mode P pooled as RGB",
                     "note: EXIF orientation 6 applied (--no-auto-orient keeps the stored one)"]


def test_default_report_of_an_array_keeps_chw_shapes(invoke, course):
    result = invoke("avg", str(course), "-k", "2", "-s", "1", "-p", "1", "--no-count-include-pad")
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{course} (1, 3, 3) float32 -> {course.parent / 'course.avg-k2-s1-p1.npy'} (1, 4, 4)"
                           "  avg k2 s1 p1 exclude-pad  ")


def test_verbose_report_off_a_terminal_is_plain_lines(invoke, rgb_png):
    result = invoke("avg", str(rgb_png), "-k", "2", "--verbose")
    lines = result.stderr.splitlines()
    assert lines[0] == f"input: {rgb_png}"
    assert "output size: H: floor((40 + 2*0 - 1*(2-1) - 1) / 2) + 1 = 20" in lines
    assert "  W: floor((60 + 2*0 - 1*(2-1) - 1) / 2) + 1 = 30" in lines
    assert all(line == line.rstrip() for line in lines)  # no padding
    assert not any(ch in result.stderr for ch in "─│┃━┏┡")  # no box drawing


def test_folder_run_lists_each_file_once_and_ends_with_a_summary(invoke, tmp_path, rgb_png):
    folder = tmp_path / "photos"
    folder.mkdir()
    rgb_png.rename(folder / "a.png")
    (folder / "bad.png").write_bytes(b"not an image")
    result = invoke("max", "photos", "-o", "out", "-k", "2", "-j", "1")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("photos/a.png 60x40 RGB 8-bit -> out/a.png 30x20  max k2  ")
    assert lines[1] == "poolcli: error: photos/bad.png: not an image file Pillow can read"
    assert lines[2].startswith("poolcli summary: 1 ok, 1 failed, 0 skipped in ")
    assert len(lines) == 3


def test_the_interrupt_message_says_how_to_resume():
    assert interrupted_line(3, 10, skip_existing=False, to_files=True) == (
        "poolcli: interrupted after 3 of 10 inputs; to resume, run the same command with --skip-existing")
    assert interrupted_line(3, 10, skip_existing=True, to_files=True) == (
        "poolcli: interrupted after 3 of 10 inputs; run the same command again to resume")
    assert interrupted_line(0, 1, skip_existing=False, to_files=True) == "poolcli: interrupted after 0 of 1 inputs"


# --------------------------------------------------------------------------- help


@pytest.mark.parametrize("args", [[], ["explain"], ["max"], ["avg"], ["explain", "max"]])
def test_no_arguments_prints_the_help_on_stdout(invoke, args):
    result = invoke(*args)
    assert result.exit_code == 0
    assert result.stdout.startswith(f"Usage: poolcli {' '.join(args)}".rstrip() + " ")
    assert result.stderr == "" and "error" not in result.stdout.lower().split("options")[0]


def test_help_without_arguments_in_a_real_process():
    out = poolcli_process()
    assert out.returncode == 0 and out.stdout.startswith("Usage: poolcli ") and out.stderr == ""


def test_help_groups_options_with_readable_metavars(invoke):
    text = invoke("avg", "--help").stdout
    headings = [line for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headings == ["Pooling:", "Pixels:", "Output:", "Folders:", "Cluster and storage:", "Encoding:", "Report:",
                        "Other options:"]
    assert "-k, --kernel N|H,W" in text and "--quality Q" in text and "-j, --jobs N" in text
    assert "--compression 0-9" in text and "--max-pixels N" in text
    for noise in ("INTEGER", "RANGE", "x>=", "TEXT", "PATH..."):
        assert noise not in text


def test_top_level_help_has_examples_and_whole_summaries(invoke):
    text = invoke("--help").stdout
    assert "Examples:" in text and "poolcli explain max" in text
    assert "Max pooling (torch's MaxPool2d) of images, .npy arrays or folders." in " ".join(text.split())
    assert "..." not in text.split("Commands:")[1].split("Examples:")[0]  # not truncated


# --------------------------------------------------------------------------- settings from the environment


def test_settings_from_the_environment_are_shown_and_used(invoke, rgb_png, tmp_path, monkeypatch):
    text = invoke("max", "--help").stdout
    for variable in ("POOLCLI_JOBS", "POOLCLI_QUALITY", "POOLCLI_COMPRESSION", "POOLCLI_MAX_PIXELS",
                     "POOLCLI_MEMORY_LIMIT"):
        assert f"[env var: {variable}]" in " ".join(text.split())
    monkeypatch.setenv("POOLCLI_QUALITY", "30")
    assert invoke("max", str(rgb_png), "-k", "2", "-o", "env.jpg", "-q").exit_code == 0
    assert invoke("max", str(rgb_png), "-k", "2", "-o", "opt.jpg", "-q", "--quality", "95").exit_code == 0
    assert (tmp_path / "env.jpg").stat().st_size < (tmp_path / "opt.jpg").stat().st_size
    monkeypatch.setenv("POOLCLI_MAX_PIXELS", "100")
    result = invoke("max", str(rgb_png), "-k", "2", "-o", "big.png")
    assert result.exit_code == 1 and "exceeds the limit of 100 pixels" in result.stderr
    monkeypatch.setenv("POOLCLI_JOBS", "0")
    result = invoke("max", str(rgb_png), "-k", "2")
    assert result.exit_code == 2 and "'--jobs'" in result.stderr and "at least 1" in result.stderr


# --------------------------------------------------------------------------- shell completion


@pytest.mark.parametrize("words, cword", [("poolcli max sam", "2"), ("poolcli avg x.png -o sam", "4")])
def test_completion_offers_file_names(words, cword):
    out = poolcli_process(env={"_POOLCLI_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": cword})
    assert out.returncode == 0
    assert out.stdout.strip().splitlines() == ["file,sam"]  # bash completes file names itself


def test_completion_offers_options():
    out = poolcli_process(env={"_POOLCLI_COMPLETE": "bash_complete", "COMP_WORDS": "poolcli max x --comp",
                               "COMP_CWORD": "3"})
    assert out.stdout.strip().splitlines() == ["plain,--compression"]


# --------------------------------------------------------------------------- compression


def test_compression_changes_size_not_pixels(invoke, tmp_path, rng):
    smooth = np.add.outer(np.arange(64), np.arange(96)).astype(np.uint8)
    Image.fromarray(np.dstack([smooth, smooth // 2, 255 - smooth])).save(tmp_path / "s.png")
    sizes = {}
    for level in ("0", "9"):
        assert invoke("avg", "s.png", "-k", "2", "-o", f"c{level}.png", "-q", "--compression", level).exit_code == 0
        sizes[level] = (tmp_path / f"c{level}.png").stat().st_size
    assert sizes["9"] < sizes["0"] / 4
    first, second = (np.asarray(Image.open(tmp_path / f"c{level}.png")) for level in ("0", "9"))
    assert np.array_equal(first, second)
    assert invoke("avg", "s.png", "-k", "2", "-o", "d.png", "-q").exit_code == 0  # the default level, 2
    assert sizes["9"] < (tmp_path / "d.png").stat().st_size < sizes["0"]


def test_compression_writes_deflated_tiff_and_notes_other_formats(invoke, rgb_png, tmp_path):
    assert invoke("max", str(rgb_png), "-k", "2", "-o", "z.tif", "--compression", "6", "-q").exit_code == 0
    assert invoke("max", str(rgb_png), "-k", "2", "-o", "raw.tif", "-q").exit_code == 0
    with Image.open(tmp_path / "z.tif") as z, Image.open(tmp_path / "raw.tif") as raw:
        assert z.info["compression"] == "tiff_adobe_deflate" and raw.info["compression"] == "raw"
        assert np.array_equal(np.asarray(z), np.asarray(raw))
    result = invoke("max", str(rgb_png), "-k", "2", "-o", "j.jpg", "--compression", "6")
    assert result.exit_code == 0 and "note: --compression has no effect on JPEG" in result.stderr.splitlines()


# --------------------------------------------------------------------------- the image API


def test_pool_image_from_a_path_equals_the_command(invoke, turned_palette_png, tmp_path):
    assert invoke("avg", "cat.png", "-k", "2", "-o", "cli.png", "-q").exit_code == 0
    out = poolcli.pool_image(turned_palette_png, "avg", kernel_size=2)
    assert out.mode == "RGB" and out.size == (2, 3)
    assert np.array_equal(np.asarray(out), np.asarray(Image.open(tmp_path / "cli.png")))


def test_pool_image_keeps_alpha_rounding_and_metadata(rng):
    rgba = np.array([[[255, 0, 0, 255], [0, 255, 0, 0]], [[0, 255, 0, 0], [0, 255, 0, 0]]], dtype=np.uint8)
    img = Image.fromarray(rgba, "RGBA")
    img.info["icc_profile"] = b"fake profile"
    img.info["dpi"] = (300, 300)
    assert np.asarray(poolcli.pool_image(img, "avg", 2)).tolist() == [[[255, 0, 0, 64]]]  # premultiplied
    raw = poolcli.pool_image(img, "avg", 2, premultiply=False)
    assert np.asarray(raw).tolist() == [[[64, 191, 0, 64]]]
    assert raw.info["icc_profile"] == b"fake profile" and raw.info["dpi"] == (150, 150)
    gray = Image.fromarray(np.array([[0, 255], [0, 255]], dtype=np.uint8))
    assert np.asarray(poolcli.pool_image(gray, "avg", 2, linear=True)).tolist() == [[188]]
    assert np.asarray(poolcli.pool_image(gray, "max", (1, 2))).tolist() == [[255], [255]]


def test_pool_image_errors_are_pool_errors(tmp_path):
    with pytest.raises(poolcli.PoolError, match="kernel 9 does not fit the 2x2 image"):
        poolcli.pool_image(Image.new("L", (2, 2)), "max", 9)
    with pytest.raises(poolcli.PoolError, match="no such file"):
        poolcli.pool_image(tmp_path / "missing.png", "max", 2)
    frames = [Image.new("L", (4, 4), v) for v in (0, 99)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(poolcli.PoolError, match="2 frames: pool_file keeps them all"):
        poolcli.pool_image(tmp_path / "anim.gif", "max", 2)
    with pytest.raises(ValueError, match='op must be "max" or "avg"'):
        poolcli.pool_image(Image.new("L", (2, 2)), "min", 2)  # type: ignore[arg-type]


def test_pool_file_writes_like_the_command_and_keeps_frames(tmp_path):
    frames = [Image.new("L", (4, 4), v) for v in (10, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=[50, 70], loop=0)
    out = poolcli.pool_file(tmp_path / "anim.gif", tmp_path / "small.gif", "max", 2)
    with Image.open(out) as img:
        assert img.n_frames == 2 and img.size == (2, 2)
    with pytest.raises(poolcli.PoolError, match="refusing to overwrite the input"):
        poolcli.pool_file(tmp_path / "anim.gif", tmp_path / "anim.gif", "max", 2)
    with pytest.raises(poolcli.PoolError, match=r"nope\.png: no such file"):
        poolcli.pool_file(tmp_path / "nope.png", tmp_path / "x.png", "max", 2)
    assert files_in(tmp_path) == ["anim.gif", "small.gif"]
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(png, "PNG")
    (tmp_path / "p.png").write_bytes(png.getvalue())
    poolcli.pool_file(tmp_path / "p.png", tmp_path / "p9.png", "avg", 2, compression=9)
    assert Image.open(tmp_path / "p9.png").getpixel((3, 3)) == (1, 2, 3)


def test_the_package_is_typed():
    assert (ROOT / "poolcli" / "py.typed").is_file()


# --------------------------------------------------------------------------- start-up


def test_one_small_file_imports_only_what_it_needs(rgb_png, tmp_path):
    # (what PIL.Image itself imports, as Pillow 12 does tempfile, is Pillow's cost, not poolcli's)
    code = ("import sys, subprocess\nfrom poolcli.cli import cli\nsys.argv = ['poolcli', *sys.argv[1:]]\n"
            "pillow = set(subprocess.run([sys.executable, '-c', 'import sys, PIL.Image; print(*sys.modules)'], "
            "capture_output=True, text=True).stdout.split())\ntry:\n    cli.main()\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(({m.split('.')[0] for m in sys.modules} - pillow) & {'rich', 'multiprocessing', 'tifffile', "
            "'zarr', 'dask', 'fsspec', 'tempfile', 'shutil', 'hashlib', 'socket'}), "
            "sorted({'concurrent.futures.process', 'numpy.ma', 'poolcli.giant', 'poolcli.tiff_io', 'poolcli.zarr_io'} "
            "& set(sys.modules)))")
    for extra in ([], ["-q"], ["--json"]):
        out = subprocess.run([sys.executable, "-c", code, "max", str(rgb_png), "-k", "2", "-o",
                              str(tmp_path / "o.png"), *extra], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert out.stdout.strip().splitlines()[-1] == "[] []", extra


def test_a_changed_depth_is_a_note(invoke, tmp_path):
    Image.fromarray(np.arange(4 * 6, dtype=np.int32).reshape(4, 6)).save(tmp_path / "i.tif")
    result = invoke("max", "i.tif", "-k", "2", "-o", "i.png")
    assert result.exit_code == 0
    first, note = result.stderr.splitlines()
    assert first.startswith("i.tif 6x4 gray 32-bit integer -> i.png 3x2  max k2  ")
    assert note == "note: written as 16-bit gray (I;16) PNG"


