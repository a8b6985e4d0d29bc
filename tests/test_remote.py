"""One data path, remote side (issue 16): Zarr, OME-Zarr, tiled TIFF and pyramids on a real S3
endpoint (moto's server on localhost, s3fs as the client) give the same pixels as the same files
on disk; remote TIFFs stream in bounded memory; storage faults are one line naming the URL; remote
whole-file reads are capped as standard input is; an external Dask cluster (real ``dask
scheduler`` / ``dask worker`` processes) pools one giant image bit-identically.

Everything goes through the command line (Click's runner or a subprocess), so none of it depends
on poolcli's internal API.  Slower cases (big images, real cluster processes) run under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from tests.conftest import IN_CI, free_port, json_lines, upload

pytest.importorskip("s3fs")
ROOT = Path(__file__).resolve().parents[1]
GUARD = 300  # seconds: only a guard against a hang, never a measured threshold
SLOW = pytest.mark.skipif(not IN_CI, reason="big images or real cluster processes: runs when CI=true")


def max2(planes: np.ndarray) -> np.ndarray:
    """torch's MaxPool2d(2) of (..., H, W): an independent reference (floor mode drops an odd edge)."""
    height, width = planes.shape[-2] // 2 * 2, planes.shape[-1] // 2 * 2
    cropped = planes[..., :height, :width]
    return cropped.reshape(*planes.shape[:-2], height // 2, 2, width // 2, 2).max(axis=(-3, -1))


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = GUARD) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "poolcli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def one_line(stderr: str) -> str:
    """The single line of ``stderr``; never a traceback nor an "internal error"."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    return lines[0]


def fetch(fs, url: str, to: Path) -> Path:
    """A copy on disk of a remote folder (a Zarr store) or file, read with the test's own client."""
    fs.invalidate_cache()
    fs.get(url.removeprefix("s3://"), str(to), recursive=True)
    return to


def write_zarr(path: Path, data: np.ndarray, zarr_format: int, chunks: tuple[int, ...]) -> None:
    array = zarr.create_array(store=str(path), shape=data.shape, dtype=data.dtype, chunks=chunks,
                              zarr_format=zarr_format)
    array[...] = data


def write_ome_zarr(path: Path, data: np.ndarray) -> None:
    """An OME-Zarr (NGFF 0.4, Zarr v2) image of axes c, y, x with two levels."""
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", shape=data.shape, dtype=data.dtype, chunks=(1, 32, 32))[...] = data
    group.create_array("1", shape=max2(data).shape, dtype=data.dtype, chunks=(1, 32, 32))[...] = max2(data)
    group.attrs["multiscales"] = [{
        "version": "0.4", "name": "cells",
        "axes": [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 0.5, 0.5]}]},
                     {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0]}]}]}]


def write_tiled_tiff(path: Path, data: np.ndarray, tile: int = 64, compress: bool = True) -> None:
    tifffile.imwrite(path, data, photometric="rgb", tile=(tile, tile), compression="zlib" if compress else None,
                     compressionargs={"level": 1} if compress else None)


# --------------------------------------------------------------------------- Zarr and OME-Zarr on S3


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_zarr_array_on_s3_pooled_to_s3_and_to_disk_equals_the_local_result(s3, tmp_path, rng, invoke,
                                                                            zarr_format):
    """Today a Zarr store on object storage is taken for an empty folder: "0 ok, 0 failed"."""
    fs, bucket = s3
    data = rng.integers(0, 65535, (3, 150, 133), dtype=np.uint16)
    write_zarr(tmp_path / "arr.zarr", data, zarr_format, (1, 64, 64))
    upload(fs, tmp_path / "arr.zarr", f"{bucket}/arr.zarr")
    local = invoke("max", "arr.zarr", "-k", "2", "-o", "here.zarr", "-q")
    assert local.exit_code == 0, local.stderr
    expected = zarr.open_array(str(tmp_path / "here.zarr"), mode="r")[...]
    assert np.array_equal(expected, max2(data))

    to_s3 = invoke("max", f"s3://{bucket}/arr.zarr", "-k", "2", "-o", f"s3://{bucket}/out.zarr", "--json")
    assert to_s3.exit_code == 0, to_s3.stderr
    records = json_lines(to_s3.stdout)
    assert len(records) == 1, f"one JSON line expected, got {to_s3.stdout!r} (a store taken for an empty folder?)"
    assert records[0]["status"] == "ok" and records[0]["output"] == f"s3://{bucket}/out.zarr"
    fetched = fetch(fs, f"s3://{bucket}/out.zarr", tmp_path / "fetched.zarr")
    assert (fetched / (".zarray" if zarr_format == 2 else "zarr.json")).is_file()  # the input's format
    assert np.array_equal(zarr.open_array(str(fetched), mode="r")[...], expected)

    to_disk = invoke("max", f"s3://{bucket}/arr.zarr", "-k", "2", "-o", "out.zarr", "-q")
    assert to_disk.exit_code == 0, to_disk.stderr
    assert np.array_equal(zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...], expected)


def test_storage_options_reach_a_zarr_on_s3_without_the_endpoint_variable(s3, s3_endpoint, tmp_path, rng,
                                                                        invoke, monkeypatch):
    fs, bucket = s3
    data = rng.integers(-1000, 1000, (70, 61), dtype=np.int32)
    write_zarr(tmp_path / "arr.zarr", data, 3, (32, 32))
    upload(fs, tmp_path / "arr.zarr", f"{bucket}/arr.zarr")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    options = json.dumps({"endpoint_url": s3_endpoint})
    result = invoke("max", f"s3://{bucket}/arr.zarr", "-k", "2", "-o", f"s3://{bucket}/out.zarr", "-q",
                    "--storage-options", options)
    assert result.exit_code == 0, result.stderr
    fetched = fetch(fs, f"s3://{bucket}/out.zarr", tmp_path / "fetched.zarr")
    assert np.array_equal(zarr.open_array(str(fetched), mode="r")[...], max2(data))


def test_an_ome_zarr_on_s3_pooled_to_s3_and_to_disk_equals_the_local_result(s3, tmp_path, rng, invoke):
    fs, bucket = s3
    data = rng.integers(0, 256, (2, 90, 77), dtype=np.uint8)
    write_ome_zarr(tmp_path / "cells.ome.zarr", data)
    upload(fs, tmp_path / "cells.ome.zarr", f"{bucket}/cells.ome.zarr")
    local = invoke("max", "cells.ome.zarr", "-k", "2", "-o", "here.ome.zarr", "-q")
    assert local.exit_code == 0, local.stderr
    here = zarr.open_group(str(tmp_path / "here.ome.zarr"), mode="r")
    assert np.array_equal(here["0"][...], max2(data))

    for output in (f"s3://{bucket}/out.ome.zarr", "out.ome.zarr"):
        result = invoke("max", f"s3://{bucket}/cells.ome.zarr", "-k", "2", "-o", output, "-q")
        assert result.exit_code == 0, result.stderr
        folder = fetch(fs, output, tmp_path / "fetched.ome.zarr") if output.startswith("s3://") \
            else tmp_path / output
        there = zarr.open_group(str(folder), mode="r")
        assert np.array_equal(there["0"][...], here["0"][...])
        assert there.attrs["multiscales"] == here.attrs["multiscales"]  # scale and translation too


# --------------------------------------------------------------------------- TIFF on S3


def test_a_remote_tiff_over_the_bomb_guard_is_streamed_not_refused(s3, tmp_path, rng, invoke):
    """A tiled TIFF of 1 Mpx with --max-pixels 500000: streamed on disk (a tile row is 64 Kpx), and
    so it must be from S3 (today it is read whole and refused)."""
    fs, bucket = s3
    data = rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    write_tiled_tiff(tmp_path / "big.tif", data)
    fs.pipe_file(f"{bucket}/big.tif", (tmp_path / "big.tif").read_bytes())
    local = invoke("max", "big.tif", "-k", "2", "-o", "here.tif", "-q", "--max-pixels", "500000")
    assert local.exit_code == 0, local.stderr
    expected = max2(data.transpose(2, 0, 1)).transpose(1, 2, 0)
    assert np.array_equal(tifffile.imread(tmp_path / "here.tif"), expected)
    for output in (f"s3://{bucket}/big.max.tif", "out.tif"):
        result = invoke("max", f"s3://{bucket}/big.tif", "-k", "2", "-o", output, "-q", "--max-pixels", "500000")
        assert result.exit_code == 0, result.stderr
        path = fetch(fs, output, tmp_path / "fetched.tif") if output.startswith("s3://") else tmp_path / output
        assert np.array_equal(tifffile.imread(path), expected)


# Runs ARGV, then prints its exit code, peak RSS (KiB) and stderr.  A child forked from this small
# launcher, not from pytest: a forked child's ru_maxrss counts the parent's pages it had before exec.
_LAUNCHER = ("import os, subprocess, sys\n"
             "process = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
             "stderr = process.stderr.read().decode()\n"
             "_, status, usage = os.wait4(process.pid, 0)\n"
             "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)\n"
             "print(stderr, end='')\n")


def peak_rss(*args: str, cwd: Path) -> tuple[int, str, int]:
    """Run poolcli ARGS; its exit code, stderr and peak resident memory in bytes."""
    launched = subprocess.run([sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "poolcli", *args], cwd=cwd,
                              capture_output=True, text=True, timeout=GUARD,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert launched.returncode == 0, launched.stderr
    first, _, stderr = launched.stdout.partition("\n")
    code, kib = map(int, first.split())
    return code, stderr, kib * 1024


@SLOW
def test_a_remote_tiled_tiff_streams_in_bounded_memory(s3, tmp_path, rng):
    """A 6000x5000 RGB tiled TIFF, uncompressed (a 90 MB object): the remote run's peak RSS over
    that of a tiny remote TIFF (the same imports and client) stays under half the file, as
    streaming with --memory-limit 16M does with range reads; a whole-file read alone holds it all."""
    fs, bucket = s3
    data = rng.integers(0, 256, (5000, 6000, 3), dtype=np.uint8)
    write_tiled_tiff(tmp_path / "big.tif", data, tile=256, compress=False)
    write_tiled_tiff(tmp_path / "tiny.tif", data[:256, :256].copy(), tile=256, compress=False)
    for name in ("big.tif", "tiny.tif"):
        fs.put_file(str(tmp_path / name), f"{bucket}/{name}")
    common = ["-k", "2", "-q", "--memory-limit", "16M"]
    code, stderr, baseline = peak_rss("max", f"s3://{bucket}/tiny.tif", "-o", f"s3://{bucket}/tiny.max.tif", *common,
                                      cwd=tmp_path)
    assert code == 0, stderr
    code, stderr, peak = peak_rss("max", f"s3://{bucket}/big.tif", "-o", f"s3://{bucket}/big.max.tif", *common,
                                  cwd=tmp_path)
    assert code == 0, stderr
    assert peak - baseline < data.nbytes // 2, (f"peak RSS {peak >> 20} MiB, {(peak - baseline) >> 20} MiB over a tiny "
                                               f"file's, for {data.nbytes >> 20} MiB of pixels")
    fetched = fetch(fs, f"s3://{bucket}/big.max.tif", tmp_path / "fetched.tif")
    assert np.array_equal(tifffile.imread(fetched), max2(data.transpose(2, 0, 1)).transpose(1, 2, 0))


# --------------------------------------------------------------------------- pyramids on S3


def test_a_pyramid_from_and_to_s3_equals_the_local_one(s3, tmp_path, rng, invoke):
    fs, bucket = s3
    data = rng.integers(0, 65536, (90, 70, 3), dtype=np.uint16)
    write_tiled_tiff(tmp_path / "scan.tif", data, tile=32)
    fs.put_file(str(tmp_path / "scan.tif"), f"{bucket}/scan.tif")
    assert invoke("pyramid", "max", "scan.tif", "-o", "here.ome.zarr", "--levels", "2", "-q").exit_code == 0
    here = zarr.open_group(str(tmp_path / "here.ome.zarr"), mode="r")
    planes = data.transpose(2, 0, 1)
    assert np.array_equal(here["2"][...], max2(max2(planes)))

    to_s3 = invoke("pyramid", "max", f"s3://{bucket}/scan.tif", "-o", f"s3://{bucket}/scan.ome.zarr", "--levels",
                   "2", "--json")
    assert to_s3.exit_code == 0, to_s3.stderr
    assert json_lines(to_s3.stdout)[0]["levels"] == [[3, 90, 70], [3, 45, 35], [3, 22, 17]]
    fetched = zarr.open_group(str(fetch(fs, f"s3://{bucket}/scan.ome.zarr", tmp_path / "f.ome.zarr")), mode="r")
    for level in ("0", "1", "2"):
        assert np.array_equal(fetched[level][...], here[level][...]), level
    assert fetched.attrs["multiscales"] == here.attrs["multiscales"]

    # an OME-Zarr on S3 in, a pyramidal OME-TIFF on S3 out
    tiff = invoke("pyramid", "max", f"s3://{bucket}/scan.ome.zarr", "-o", f"s3://{bucket}/scan.pyramid.tif",
                  "--levels", "1", "-q")
    assert tiff.exit_code == 0, tiff.stderr
    with tifffile.TiffFile(fetch(fs, f"s3://{bucket}/scan.pyramid.tif", tmp_path / "p.tif")) as tif:
        levels = tif.series[0].levels
        assert [level.shape for level in levels] == [(3, 90, 70), (3, 45, 35)] or \
            [level.shape for level in levels] == [(90, 70, 3), (45, 35, 3)]
        first = levels[1].asarray()
    assert np.array_equal(first if first.shape[0] == 3 else first.transpose(2, 0, 1), max2(planes))


# --------------------------------------------------------------------------- storage faults


def zarr_on(fs, bucket: str, tmp_path: Path) -> str:
    write_zarr(tmp_path / "arr.zarr", np.arange(64, dtype=np.uint8).reshape(8, 8), 2, (4, 4))
    upload(fs, tmp_path / "arr.zarr", f"{bucket}/arr.zarr")
    return f"s3://{bucket}/arr.zarr"


@pytest.mark.parametrize("case", ["png in", "zarr in", "png out", "zarr out"])
def test_a_missing_bucket_is_one_line_naming_the_url(s3, tmp_path, rgb_png, invoke, case):
    fs, bucket = s3
    source = zarr_on(fs, bucket, tmp_path) if case == "zarr out" else "rgb.png"
    url = {"png in": "s3://no-such-bucket-16/a.png", "zarr in": "s3://no-such-bucket-16/arr.zarr",
           "png out": "s3://no-such-bucket-16/out.png", "zarr out": "s3://no-such-bucket-16/out.zarr"}[case]
    args = [url, "-o", "out" + Path(url).suffix] if case.endswith("in") else [source, "-o", url]
    result = invoke("max", *args, "-k", "2")
    assert result.exit_code == 1, result.stderr
    line = one_line(result.stderr)
    assert line.startswith("poolcli: error: ") and url in line
    assert not list(tmp_path.glob("out*"))


@pytest.mark.parametrize("what", ["a.png", "arr.zarr", "big.tif"])
def test_a_missing_key_is_one_line_naming_the_url(s3, tmp_path, invoke, what):
    _, bucket = s3
    url = f"s3://{bucket}/nothing/{what}"
    result = invoke("max", url, "-k", "2", "-o", f"s3://{bucket}/out/{what}")
    assert result.exit_code == 1, result.stderr
    assert one_line(result.stderr) == f"poolcli: error: {url}: no such file"


@pytest.mark.parametrize("what", ["a.png", "arr.zarr"])
def test_an_unreachable_endpoint_is_one_line_with_the_likely_fix(s3, tmp_path, rgb_png, invoke, what):
    """Nothing listens on the endpoint given by --storage-options (a fresh s3fs client, not the cached one)."""
    fs, bucket = s3
    source = zarr_on(fs, bucket, tmp_path) if what == "arr.zarr" else f"s3://{bucket}/a.png"
    if what == "a.png":
        fs.put_file(str(rgb_png), f"{bucket}/a.png")
    wrong = json.dumps({"endpoint_url": f"http://127.0.0.1:{free_port()}", "config_kwargs": {
        "connect_timeout": 1, "retries": {"max_attempts": 1}}})
    result = invoke("max", source, "-k", "2", "-o", "out" + Path(what).suffix, "--storage-options", wrong)
    assert result.exit_code == 1, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"poolcli: error: {source}: ")
    assert "AWS_ENDPOINT_URL" in line or "--storage-options" in line
    assert not list(tmp_path.glob("out*"))


@SLOW
def test_a_wrong_endpoint_variable_is_one_line_in_a_fresh_process(s3, tmp_path, rgb_png):
    _, bucket = s3
    url = f"s3://{bucket}/a.png"
    result = run_cli("max", url, "-k", "2", "-o", "out.png",
                     env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_MAX_ATTEMPTS": "1"},
                     cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"poolcli: error: {url}: ") and "AWS_ENDPOINT_URL" in line


@pytest.mark.parametrize("what", ["a.png", "arr.zarr", "out"])
def test_denied_access_is_one_line_naming_the_url_and_the_credentials(s3, tmp_path, rgb_png, invoke, what,
                                                                     monkeypatch):
    fs, bucket = s3
    if what == "arr.zarr":
        source = zarr_on(fs, bucket, tmp_path)
    else:
        fs.put_file(str(rgb_png), f"{bucket}/a.png")
        source = f"s3://{bucket}/a.png"
    from moto import settings

    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # the test's keys are unknown to moto
    args = ["rgb.png", "-o", f"s3://{bucket}/out.png"] if what == "out" else [source, "-o", "out" + Path(what).suffix]
    # keys that differ from the cached client's, so a fresh client asks the server
    denied = json.dumps({"key": "AKIADENIED0000000016", "secret": "not-the-secret-SHH"})
    result = invoke("max", *args, "-k", "2", "--storage-options", denied)
    assert result.exit_code == 1, result.stderr
    line = one_line(result.stderr)
    url = args[2] if what == "out" else source
    assert line.startswith(f"poolcli: error: {url}: ") and "credentials" in line.lower()
    assert "not-the-secret-SHH" not in result.stdout + result.stderr
    assert not list(tmp_path.glob("out*"))


# --------------------------------------------------------------------------- whole-file reads are capped


def png_with_trailing_bytes(path: Path, extra: int) -> None:
    """A valid 16x16 gray PNG followed by ``extra`` bytes after IEND (which readers ignore)."""
    from PIL import Image

    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(path)
    with open(path, "ab") as handle:
        handle.write(b"\0" * extra)


def test_a_remote_whole_file_read_is_capped_like_standard_input(s3, tmp_path, invoke):
    """--max-pixels 1000 allows 16 bytes a pixel + 1 MiB from a stream: 1 MiB + 16000 bytes.  A
    16x16 PNG padded to 2 MiB passes the header check and must then be refused by that cap, as
    the same bytes on standard input are, instead of being read whole."""
    fs, bucket = s3
    png_with_trailing_bytes(tmp_path / "huge.png", 2 << 20)
    fs.put_file(str(tmp_path / "huge.png"), f"{bucket}/huge.png")
    limit = 1000 * 16 + (1 << 20)
    stdin = invoke("max", "-", "-k", "2", "-o", "from-stdin.png", "--max-pixels", "1000",
                   input=(tmp_path / "huge.png").read_bytes())
    assert stdin.exit_code == 1 and f"standard input holds more than {limit} bytes" in stdin.stderr
    url = f"s3://{bucket}/huge.png"
    result = invoke("max", url, "-k", "2", "-o", "out.png", "--max-pixels", "1000")
    assert result.exit_code == 1, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"poolcli: error: {url}: ") and f"more than {limit} bytes" in line
    assert not (tmp_path / "out.png").exists()


# --------------------------------------------------------------------------- an external Dask cluster


@pytest.fixture(scope="module")
def dask_processes(s3_endpoint, tmp_path_factory):
    """A real ``dask scheduler`` and ``dask worker`` (2 single-threaded worker processes) on
    127.0.0.1, started in folders of their own with temporary folders of their own (nothing shared
    with the client but what an address and a URL say), stopped at the end."""
    distributed = pytest.importorskip("distributed")
    if not IN_CI:
        pytest.skip("starts real dask scheduler and worker processes: runs when CI=true")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    home = tmp_path_factory.mktemp("dask")
    started: list[subprocess.Popen] = []

    dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")
    if dask is None:
        pytest.skip("no dask command")

    def start(name: str, *args: str) -> None:
        folder = home / name
        (folder / "tmp").mkdir(parents=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(folder / "tmp")}
        started.append(subprocess.Popen([dask, name, *args], cwd=folder, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL))

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0")
        start("worker", address, "--nthreads", "1", "--nworkers", "2", "--no-dashboard", "--host", "127.0.0.1",
              "--local-directory", str(home / "worker" / "tmp"))
        with distributed.Client(address, timeout=GUARD) as client:
            client.wait_for_workers(2, timeout=GUARD)  # the event: both workers have registered
        yield address
    finally:
        for process in reversed(started):
            process.terminate()
        for process in reversed(started):
            try:
                process.wait(timeout=GUARD)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def tasks_seen(address: str) -> int:
    """How many tasks the scheduler has run (done or erred), whatever their names."""
    from distributed import Client

    with Client(address, timeout=GUARD) as client:
        return client.run_on_scheduler(lambda dask_scheduler: sum(
            sum(prefix.state_counts.get(state, 0) for state in ("memory", "released", "forgotten", "erred"))
            for prefix in dask_scheduler.task_prefixes.values()))


@pytest.fixture
def giant_zarr(tmp_path, rng) -> np.ndarray:
    data = rng.integers(0, 65535, (3, 700, 530), dtype=np.uint16)
    write_zarr(tmp_path / "giant.zarr", data, 2, (1, 128, 128))
    return data


def test_external_scheduler_giant_zarr_local_to_local(dask_processes, giant_zarr, tmp_path, invoke):
    """The README's recipe: today "internal error: ValueError: No clients found"."""
    assert invoke("max", "giant.zarr", "-k", "2", "-o", "here.zarr", "-q").exit_code == 0
    expected = zarr.open_array(str(tmp_path / "here.zarr"), mode="r")[...]
    assert np.array_equal(expected, max2(giant_zarr))
    before = tasks_seen(dask_processes)
    result = run_cli("max", "giant.zarr", "-k", "2", "-o", "there.zarr", "-q", "--scheduler", dask_processes,
                     cwd=tmp_path)  # relative paths: the workers run elsewhere
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert tasks_seen(dask_processes) > before, "no task ran on the cluster: the client pooled it"
    assert np.array_equal(zarr.open_array(str(tmp_path / "there.zarr"), mode="r")[...], expected)
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_external_scheduler_giant_zarr_s3_to_s3(dask_processes, s3, giant_zarr, tmp_path, invoke):
    fs, bucket = s3
    upload(fs, tmp_path / "giant.zarr", f"{bucket}/giant.zarr")
    assert invoke("max", "giant.zarr", "-k", "2", "-o", "here.zarr", "-q").exit_code == 0
    expected = zarr.open_array(str(tmp_path / "here.zarr"), mode="r")[...]
    before = tasks_seen(dask_processes)
    result = run_cli("max", f"s3://{bucket}/giant.zarr", "-k", "2", "-o", f"s3://{bucket}/out.zarr", "-q",
                     "--scheduler", dask_processes, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert tasks_seen(dask_processes) > before, "no task ran on the cluster: the client pooled it"
    fetched = fetch(fs, f"s3://{bucket}/out.zarr", tmp_path / "fetched.zarr")
    assert np.array_equal(zarr.open_array(str(fetched), mode="r")[...], expected)
    assert not [p for p in fs.find(bucket) if p.endswith(".part")]


def test_external_scheduler_giant_tiff_s3_to_s3(dask_processes, s3, tmp_path, rng, invoke):
    fs, bucket = s3
    data = rng.integers(0, 256, (700, 530, 3), dtype=np.uint8)
    write_tiled_tiff(tmp_path / "giant.tif", data, tile=64)
    fs.put_file(str(tmp_path / "giant.tif"), f"{bucket}/giant.tif")
    assert invoke("max", "giant.tif", "-k", "2", "-o", "here.tif", "-q").exit_code == 0
    expected = tifffile.imread(tmp_path / "here.tif")
    assert np.array_equal(expected, max2(data.transpose(2, 0, 1)).transpose(1, 2, 0))
    before = tasks_seen(dask_processes)
    result = run_cli("max", f"s3://{bucket}/giant.tif", "-k", "2", "-o", f"s3://{bucket}/out.tif", "-q",
                     "--scheduler", dask_processes, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert tasks_seen(dask_processes) > before, "no task ran on the cluster: the client pooled it"
    assert np.array_equal(tifffile.imread(fetch(fs, f"s3://{bucket}/out.tif", tmp_path / "fetched.tif")), expected)


def test_a_scheduler_that_goes_away_mid_run_is_one_line(tmp_path):
    """Issue 16: a remote scheduler that goes away mid-run: one line, exit 1, and the outputs
    already written are whole (a rerun with --skip-existing finishes the folder).  Its own
    scheduler and workers: this test kills its scheduler."""
    pytest.importorskip("distributed")
    if not IN_CI:
        pytest.skip("starts and kills real dask scheduler and worker processes: runs when CI=true")
    from PIL import Image

    dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")
    if dask is None:
        pytest.skip("no dask command")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(5)
    for n in range(60):
        Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(photos / f"{n:02d}.png")
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                                  "--dashboard-address", ":0"], cwd=tmp_path, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--nworkers", "2", "--no-dashboard",
                               "--host", "127.0.0.1"], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from distributed import Client

        with Client(address, timeout=GUARD) as client:
            client.wait_for_workers(2, timeout=GUARD)
        run = subprocess.Popen([sys.executable, "-m", "poolcli", "max", str(photos), "-k", "2", "-o", "out/",
                                "--scheduler", address], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
        assert run.stderr is not None
        first = run.stderr.readline()  # the event: one input is done
        assert first.startswith(str(photos)), first
        scheduler.kill()
        rest = run.stderr.read()
        assert run.wait(timeout=GUARD) == 1
        errors = [line for line in (first + rest).splitlines() if line.startswith("poolcli: error:")]
        assert len(errors) == 1 and errors[0].startswith(f"poolcli: error: {address}: lost the Dask scheduler"), \
            first + rest
        assert "--skip-existing" in errors[0] and "Traceback" not in rest and "distributed." not in rest
        written = sorted((tmp_path / "out").iterdir())
        assert written and not [p.name for p in written if p.name.endswith(".part")]
        for path in written:  # whole: each decodes to the pooled size
            with Image.open(path) as image:
                image.load()
                assert image.size == (200, 150)
    finally:
        for process in (worker, scheduler):
            process.kill()
            process.wait()
