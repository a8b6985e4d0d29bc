"""The command line for giant images: --memory-limit, streamed TIFF and Zarr, folders, pyramids."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from poolcli import engine, pixels, zarr_io
from poolcli.params import PoolParams
from tests import oracle
from tests.conftest import json_lines


@pytest.fixture
def tiled_rgb16(tmp_path, rng):
    data = rng.integers(0, 65536, (90, 70, 3), dtype=np.uint16)
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, data, photometric="rgb", tile=(32, 32), compression="zlib")
    return path, data


def test_a_tiled_tiff_streams_to_a_tiled_bigtiff_named_as_usual(invoke, tiled_rgb16, tmp_path):
    _, data = tiled_rgb16
    result = invoke("avg", "scan.tif", "-k", "3", "-s", "2", "-p", "1", "--memory-limit", "64M", "--json")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "scan.avg-k3-s2-p1.tif"
    (record,) = json_lines(result.stdout)
    assert record["status"] == "ok" and record["input_shape"] == [3, 90, 70] and record["output_shape"] == [3, 45, 35]
    with tifffile.TiffFile(out) as tif:
        assert tif.is_bigtiff and tif.pages[0].is_tiled and tif.pages[0].compression == 8  # Deflate kept
        pooled = tif.pages[0].asarray()
    expected = pixels.pool_pixel_planes(data.transpose(2, 0, 1), PoolParams("avg", (3, 3), (2, 2), (1, 1)))
    assert np.array_equal(pooled.transpose(2, 0, 1), expected)


def test_the_report_names_depth_channels_and_layout(invoke, tiled_rgb16):
    result = invoke("max", "scan.tif", "-k", "2", "-v")  # the full report names the layout
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stderr.split())
    assert "uint16, 3 channels, tiled TIFF (Deflate, interleaved)" in text
    assert "written as a tiled BigTIFF: uint16, 3 channels, 256x256 tiles, zlib, interleaved" in text


@pytest.mark.parametrize("value, message", [
    ("abc", "'abc' is not a size: use bytes or K, M, G, T (e.g. 64M, 2G)"),
    ("0", "'0': the memory limit must be positive (e.g. 64M, 2G)"),
    ("-1G", "'-1G': the memory limit must be positive (e.g. 64M, 2G)"),
])
def test_memory_limit_parsing_errors_are_usage_errors(invoke, tiled_rgb16, value, message):
    result = invoke("max", "scan.tif", "-k", "2", "--memory-limit", value)
    assert result.exit_code == 2
    assert "Invalid value for '--memory-limit'" in result.stderr and f": {message}" in result.stderr


def test_memory_limit_too_small_for_one_row_of_strips(invoke, tmp_path, rng):
    tifffile.imwrite(tmp_path / "one.tif", rng.integers(0, 256, (300, 200), dtype=np.uint8), rowsperstrip=300,
                     bigtiff=True)
    result = invoke("max", "one.tif", "-k", "2", "--memory-limit", "10K")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("poolcli: error: one.tif: one row of TIFF strips (300 rows) needs 58.6 KiB in "
                                     "memory, over --memory-limit 10 KiB; raise --memory-limit")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.tif"]


def test_zarr_folders_are_inputs_in_and_out(invoke, tmp_path, rng):
    data = rng.random((2, 40, 30)).astype(np.float32)
    (tmp_path / "in").mkdir()
    newest = 3 if zarr_io.zarr_major() >= 3 else 2
    zarr_io.create_array(None, None, data.shape, data.dtype, (1, 16, 16), newest, path=tmp_path / "in" / "cube.zarr")[
        ...] = data
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "in" / "small.png")
    one = invoke("max", "in/cube.zarr", "-k", "2")
    assert one.exit_code == 0, one.stderr
    assert np.array_equal(zarr.open_array(str(tmp_path / "in" / "cube.max-k2.zarr"))[...], engine.max_pool2d(data, 2))
    (tmp_path / "in" / "cube.max-k2.zarr").rename(tmp_path / "elsewhere.zarr")
    folder = invoke("avg", "in", "-o", "out", "-k", "2", "--json", "-j", "1")
    assert folder.exit_code == 0, folder.stderr
    assert sorted(r["input"] for r in json_lines(folder.stdout)) == ["in/cube.zarr", "in/small.png"]
    assert np.array_equal(zarr.open_array(str(tmp_path / "out" / "cube.zarr"))[...], engine.avg_pool2d(data, 2))
    again = invoke("avg", "in/cube.zarr", "-k", "2", "-o", "out/cube.zarr")  # an old Zarr output is replaced
    assert again.exit_code == 0, again.stderr


def test_pyramid_command_ome_zarr_and_ome_tiff(invoke, tiled_rgb16, tmp_path):
    _, data = tiled_rgb16
    result = invoke("pyramid", "max", "scan.tif", "-o", "scan.ome.zarr", "--levels", "2", "--json")
    assert result.exit_code == 0, result.stderr
    (record,) = json_lines(result.stdout)
    assert record["levels"] == [[3, 90, 70], [3, 45, 35], [3, 22, 17]] and record["kernel_size"] == [2, 2]
    group = zarr.open_group(str(tmp_path / "scan.ome.zarr"), mode="r")
    version = "0.5" if int(zarr.__version__.split(".")[0]) >= 3 else "0.4"  # NGFF 0.5 where zarr writes v3
    attrs = dict(group.attrs)
    assert (attrs["ome"]["version"] if "ome" in attrs else attrs["multiscales"][0]["version"]) == version
    assert np.array_equal(group["2"][...], engine.max_pool2d(engine.max_pool2d(data.transpose(2, 0, 1), 2), 2))
    tiff = invoke("pyramid", "avg", "scan.tif", "-o", "scan.pyramid.tif", "--levels", "1", "-q")
    assert tiff.exit_code == 0 and tiff.stderr == ""
    with tifffile.TiffFile(tmp_path / "scan.pyramid.tif") as tif:
        assert tif.is_ome and [lv.shape for lv in tif.series[0].levels] == [(90, 70, 3), (45, 35, 3)]


@pytest.mark.parametrize("args, message", [
    (["-o", "x.png", "--levels", "2"], "Invalid value for '-o/--output': a pyramid is written as .zarr"),
    (["-o", "x.zarr", "--levels", "0"], "Invalid value for '--levels': 0 is out of range: give a number at least 1"),
])
def test_pyramid_usage_errors(invoke, tiled_rgb16, args, message):
    result = invoke("pyramid", "max", "scan.tif", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_pyramid_depth_is_automatic_until_a_level_fits_in_one_tile(invoke, tmp_path, rng):
    """As libvips: levels until one fits in 256x256 (1100 -> 550 -> 275 -> 137); each level is
    the oracle's max pool of the level above."""
    data = rng.integers(0, 256, (1100, 300), dtype=np.uint8)  # (the oracle checks a crop of it)
    np.save(tmp_path / "wide.npy", data)
    result = invoke("pyramid", "max", "wide.npy", "-o", "wide.ome.zarr", "--json")
    assert result.exit_code == 0, result.stderr
    (record,) = json_lines(result.stdout)
    assert record["levels"] == [[1, 1100, 300], [1, 550, 150], [1, 275, 75], [1, 137, 37]]
    group = zarr.open_group(str(tmp_path / "wide.ome.zarr"), mode="r")
    level = data[None, None, :96, :64]
    for n in range(1, 4):
        level = oracle.max_pool2d_ref(level, (2, 2), (2, 2), (0, 0), (1, 1), False)[0]
        assert np.array_equal(group[str(n)][: 96 >> n, : 64 >> n], level[0, 0])
    stride_one = invoke("pyramid", "max", "wide.npy", "-o", "slow.ome.zarr", "-s", "1")
    assert stride_one.exit_code == 1
    assert stride_one.stderr == ("poolcli: error: wide.npy: level 1 is not much smaller than the level above "
                                 "(1099x299 from 1100x300): give --levels N, or a stride that shrinks each level\n")


def test_an_image_that_fits_in_one_tile_is_its_own_pyramid(invoke, tiled_rgb16):
    result = invoke("pyramid", "max", "scan.tif", "-o", "scan.ome.zarr", "--json")
    assert result.exit_code == 0, result.stderr
    assert json_lines(result.stdout)[0]["levels"] == [[3, 90, 70]]


def test_pyramid_skip_existing_leaves_the_output_alone(invoke, tiled_rgb16, tmp_path):
    first = invoke("pyramid", "max", "scan.tif", "-o", "scan.pyramid.tif", "-q")
    assert first.exit_code == 0, first.stderr
    before = (tmp_path / "scan.pyramid.tif").stat()
    again = invoke("pyramid", "max", "scan.tif", "-o", "scan.pyramid.tif", "--skip-existing", "--json")
    assert again.exit_code == 0, again.stderr
    (record,) = json_lines(again.stdout)
    assert record["status"] == "skipped"
    after = (tmp_path / "scan.pyramid.tif").stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)


@pytest.mark.parametrize("args, tiff_codec, zarr_codec", [
    ([], 1, None),  # an uncompressed input: no codec's time spent on the levels
    (["--compression", "0"], 1, None),
    (["--compression", "6"], 8, "zlib"),
])
def test_pyramid_compression_follows_the_input_unless_asked(invoke, tmp_path, rng, args, tiff_codec, zarr_codec):
    data = rng.integers(0, 256, (300, 280, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "raw.tif", data, photometric="rgb", tile=(64, 64))
    tiff = invoke("pyramid", "avg", "raw.tif", "-o", "raw.pyramid.tif", "-q", *args)
    assert tiff.exit_code == 0, tiff.stderr
    with tifffile.TiffFile(tmp_path / "raw.pyramid.tif") as tif:
        pages = [tif.pages[0], *tif.pages[0].pages]
        assert [int(page.compression) for page in pages] == [tiff_codec] * 2
        assert np.array_equal(pages[0].asarray(), data)
    zarr_out = invoke("pyramid", "avg", "raw.tif", "-o", "raw.ome.zarr", "-q", *args)
    assert zarr_out.exit_code == 0, zarr_out.stderr
    array = zarr.open_group(str(tmp_path / "raw.ome.zarr"), mode="r")["1"]
    listed = array.compressors if hasattr(array, "compressors") else [array.compressor]
    codecs = [type(c).__name__.lower() for c in listed if c is not None]
    # deflate: numcodecs' Zlib in Zarr v2 (NGFF 0.4), the standard gzip codec in Zarr v3 (NGFF 0.5)
    assert codecs == ([] if zarr_codec is None else [zarr_codec if zarr_io.zarr_major() < 3 else "gzipcodec"])


def test_pyramid_verbose_report(invoke, tiled_rgb16):
    result = invoke("pyramid", "max", "scan.tif", "-o", "scan.ome.zarr", "--levels", "1", "-v")
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stderr.split())
    assert "operation: max_pool2d" in text and "output size: H: floor((90 + 2*0 - 1*(2-1) - 1) / 2) + 1 = 45" in text
    assert "levels (3, 90, 70) → (3, 45, 35)" in text


def test_help_of_the_new_commands_imports_nothing_heavy():
    code = ("import sys\nfrom poolcli.cli import cli\n"
            "try:\n    cli.main(['pyramid', 'max', '--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('numpy', 'PIL', 'rich', 'tifffile', 'zarr', 'dask', 'fsspec') if m in sys.modules]\n"
            "print(heavy)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip().endswith("[]")
    assert "--memory-limit" in output and "--levels" in output


def _run_on_terminal(args: list[str], cwd) -> tuple[int, str]:
    """``poolcli ARGS`` with its standard error on a pseudo-terminal (as in a user's shell):
    the exit code and everything it drew there."""
    import os

    main, child = os.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen([sys.executable, "-m", "poolcli", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=child, env=env)
    os.close(child)
    drawn = b""
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        drawn += data
    os.close(main)
    return process.wait(), drawn.decode(errors="replace")


@pytest.fixture
def striped_scan(tmp_path, rng):
    """A tiled TIFF that a small --memory-limit pools in several strips."""
    data = rng.integers(0, 256, (600, 300, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "scan.tif", data, photometric="rgb", tile=(64, 64))
    return ["--memory-limit", str(48 * 2**20 + 400_000)]


@pytest.mark.parametrize("args, bars", [
    (["pyramid", "max", "scan.tif", "-o", "scan.ome.zarr"], ["pyramid level 0", "3/3", "pyramid level 1", "2/2"]),
    (["max", "scan.tif", "-k", "2", "-o", "small.tif"], ["pooling strips", "4/4"]),  # 88 rows a strip
])
def test_progress_bars_on_a_terminal_and_none_elsewhere(tmp_path, striped_scan, args, bars):
    code, drawn = _run_on_terminal([*args, *striped_scan], tmp_path)
    assert code == 0, drawn
    for text in bars:
        assert text in drawn, drawn
    piped = subprocess.run([sys.executable, "-m", "poolcli", *args, *striped_scan], cwd=tmp_path,
                           capture_output=True, text=True)
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr.startswith("scan.tif (3, 600, 300) uint8 -> ")  # the report, and no bar
    assert "\x1b" not in piped.stderr and not any(text in piped.stderr for text in bars[::2])
    quiet = _run_on_terminal([*args, *striped_scan, "--no-progress", "-q"], tmp_path)
    assert quiet == (0, "")
