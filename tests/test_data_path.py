"""One data path, local side (issue 16): every local output, file or folder (streamed TIFF, Zarr
store, pyramid), goes through one commit: symlinked outputs keep the link and replace its target,
devices are written through or refused with one line, nothing partial is left, stale temporaries
of a killed run (pyramids and ``--scheduler local`` included) are removed by the next run for its
outputs, and a ``--scheduler local`` run stopped by SIGTERM / SIGHUP prints one line, no worker
traceback.

Only the command line is used (Click's runner or subprocesses), never poolcli's internals.  Real
devices are made with mknod in the test's folder rather than touching /dev/null or /dev/full:
these tests may run as root, where a wrong rename would replace the machine's own device.
Waits are on events (a line, a file appearing, a process ending), guarded by a timeout.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from tests.conftest import IN_CI
from tests.test_signals import alive, children, wait_gone

ROOT = Path(__file__).resolve().parents[1]
GUARD = 120  # seconds: only a guard against a hang, never a measured threshold
SLOW = pytest.mark.skipif(not IN_CI, reason="kills or signals real runs of several processes: runs when CI=true")
LINUX = pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(os, "pidfd_open"),
                           reason="needs Linux /proc and pidfd")

# (command, output) for every kind of local output that is not a plain image file
OUTPUTS = [("max", "out.tif"), ("max", "out.zarr"), ("pyramid", "out.ome.zarr"), ("pyramid", "out.tif")]
OUTPUT_IDS = ["streamed-tiff", "zarr", "pyramid-ome-zarr", "pyramid-tiff"]


def max2(planes: np.ndarray) -> np.ndarray:
    """torch's MaxPool2d(2) of (..., H, W) with even H and W: an independent reference."""
    *batch, height, width = planes.shape
    return planes.reshape(*batch, height // 2, 2, width // 2, 2).max(axis=(-3, -1))


@pytest.fixture
def scan(tmp_path, rng) -> np.ndarray:
    """scan.tif: a tiled RGB TIFF (always streamed) of 96x80, as (C, H, W)."""
    data = rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "scan.tif", data, photometric="rgb", tile=(32, 32))
    return data.transpose(2, 0, 1)


def pool(invoke, command: str, output: str, *extra: str):
    """``poolcli max scan.tif -k 2 -o OUTPUT`` with a --memory-limit small enough that the TIFF is
    read and written in several strips, or ``poolcli pyramid max scan.tif -o OUTPUT --levels 1``."""
    args = ["max", "scan.tif", "-k", "2", "--memory-limit", "40K"] if command == "max" else \
        ["pyramid", "max", "scan.tif", "--levels", "1"]
    return invoke(*args, "-o", output, "-q", *extra)


def first_level(path: Path) -> np.ndarray:
    """The pooled image of an output of ``pool`` as (C, H, W)."""
    if path.name.endswith(".ome.zarr"):
        return zarr.open_group(str(path), mode="r")["1"][...]
    if path.name.endswith(".zarr"):
        return zarr.open_array(str(path), mode="r")[...]
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        pixels = series.levels[1].asarray() if len(series.levels) > 1 else series.asarray()
    return pixels if pixels.shape[0] == 3 else pixels.transpose(2, 0, 1)


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- symlinked outputs


@pytest.mark.parametrize(("command", "output"), OUTPUTS, ids=OUTPUT_IDS)
def test_a_symlinked_output_keeps_the_link_and_replaces_its_target(invoke, tmp_path, scan, command, output):
    real = tmp_path / "real"
    real.mkdir()
    target = real / ("target" + output[3:])
    if output.endswith(".zarr"):  # an older output (a folder that is no Zarr store is refused, not replaced)
        zarr.open_group(str(target), mode="w", zarr_format=2).create_array("old", shape=(2,), dtype="u1")[...] = 7
    else:
        target.write_bytes(b"an older file")
    os.symlink(f"real/{target.name}", tmp_path / output)
    result = pool(invoke, command, output)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / output).is_symlink(), "the link was replaced by the output"
    assert os.readlink(tmp_path / output) == f"real/{target.name}"
    assert np.array_equal(first_level(target), max2(scan))
    assert entries(real) == [target.name]  # the target replaced, no temporary left beside it
    assert entries(tmp_path) == sorted(["real", "scan.tif", output])
    if output.endswith(".zarr"):
        assert not (target / "old").exists()


# --------------------------------------------------------------------------- devices


def device(tmp_path: Path, name: str, minor: int) -> Path:
    """A character device like /dev/null (minor 3) or /dev/full (minor 7), made in tmp_path."""
    path = tmp_path / name
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    except (PermissionError, OSError) as error:
        pytest.skip(f"mknod is not permitted here ({error})")
    return path


def assert_still_the_device(path: Path, minor: int) -> None:
    info = os.lstat(path)
    assert stat.S_ISCHR(info.st_mode) and info.st_rdev == os.makedev(1, minor), "the device was replaced"


@pytest.mark.parametrize(("command", "output"), OUTPUTS, ids=OUTPUT_IDS)
def test_a_null_device_output_is_written_through_or_refused_in_one_line(invoke, tmp_path, scan, command, output):
    null = device(tmp_path, output, 3)
    result = pool(invoke, command, output)
    assert_still_the_device(null, 3)
    assert entries(tmp_path) == sorted(["scan.tif", output])  # no partial output, no temporary
    if result.exit_code != 0:
        assert result.exit_code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("poolcli: error: ") and output in lines[0], result.stderr
        assert "internal error" not in result.stderr
    else:
        assert result.stderr == ""


@pytest.mark.parametrize(("command", "output"), OUTPUTS, ids=OUTPUT_IDS)
def test_a_full_device_output_fails_in_one_line_and_leaves_nothing(invoke, tmp_path, scan, command, output):
    """/dev/full's numbers: every write fails with ENOSPC, as on a full disk."""
    full = device(tmp_path, output, 7)
    result = pool(invoke, command, output)
    assert result.exit_code == 1, f"exit {result.exit_code}, {stat.filemode(os.lstat(full).st_mode)}: {result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("poolcli: error: ") and output in lines[0], result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert_still_the_device(full, 7)
    assert entries(tmp_path) == sorted(["scan.tif", output])


# --------------------------------------------------------------------------- stale temporaries


@pytest.mark.parametrize(("command", "output", "extra"), [
    *((command, output, []) for command, output in OUTPUTS),
    *((command, output, ["--skip-existing"]) for command, output in OUTPUTS if command == "max"),  # (not pyramid's)
], ids=[*OUTPUT_IDS, "streamed-tiff-skip-existing", "zarr-skip-existing"])
def test_stale_temporaries_of_these_outputs_are_removed_by_the_next_run(invoke, tmp_path, scan, command, output,
                                                                      extra):
    """As a killed run leaves them: ``.NAME.XXXXXXXX.part`` files and folders, older than this run.
    Another output's, and one newer than this run (another run's, in progress), are kept."""
    stale = [f".{output}.abcd1234.part", f".{output}.zz_9zz9z.part"]
    kept = [".other.zarr.abcd1234.part", f"{output}.part", f".{output}.toolongrandom.part"]
    fresh = f".{output}.newernew.part"
    for name in (stale[0], *kept, fresh):  # folders, as a Zarr store or a pyramid is written
        (tmp_path / name).mkdir()
        (tmp_path / name / "0.0.0").write_bytes(b"half a chunk")
    (tmp_path / stale[1]).write_bytes(b"half a file")  # a file, as a TIFF is written
    past, future = time.time() - 3600, time.time() + 3600
    for name in (*stale, *kept):
        os.utime(tmp_path / name, (past, past))
    os.utime(tmp_path / fresh, (future, future))
    result = pool(invoke, command, output, *extra)
    assert result.exit_code == 0, result.stderr
    names = entries(tmp_path)
    assert not set(stale) & set(names), names
    assert set(kept) | {fresh, output} <= set(names)
    assert np.array_equal(first_level(tmp_path / output), max2(scan))


def parts(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.part")) if folder.exists() else []


@SLOW
@LINUX
def test_a_killed_pyramid_leaves_a_temporary_that_the_next_run_removes(tmp_path, rng):
    data = rng.integers(0, 256, (3072, 3072, 3), dtype=np.uint8)  # seconds of work: killed well before the end
    tifffile.imwrite(tmp_path / "big.tif", data, photometric="rgb", tile=(64, 64), compression="zlib")
    command = [sys.executable, "-m", "poolcli", "pyramid", "max", "big.tif", "-o", "pyr.ome.zarr", "--levels", "3",
               "-q"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([*command, "--memory-limit", "1M"], cwd=tmp_path, env=env,  # (small strips: slow)
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + GUARD
    while not list(tmp_path.glob(".pyr.ome.zarr.*.part/0/*")):  # the event: the temporary holds level 0's keys
        assert process.poll() is None, "the pyramid was written before it could be killed"
        assert time.monotonic() < deadline
    everyone = [process.pid, *descendants(process.pid)]
    os.killpg(process.pid, signal.SIGKILL)  # as the out-of-memory killer or `kill -9` of the job: no clean-up
    process.communicate(timeout=GUARD)
    wait_gone(everyone)
    assert not (tmp_path / "pyr.ome.zarr").exists(), "the pyramid was written before it could be killed"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]  # what the kill left
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=GUARD)
    assert again.returncode == 0, again.stderr
    assert parts(tmp_path) == []
    group = zarr.open_group(str(tmp_path / "pyr.ome.zarr"), mode="r")
    assert np.array_equal(group["1"][...], max2(data.transpose(2, 0, 1)))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """12 random 320x320 RGB PNGs: slow enough to encode that a run is under way for a while."""
    folder = tmp_path_factory.mktemp("data-path") / "photos"
    folder.mkdir()
    rng = np.random.default_rng(16)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (320, 320, 3), dtype=np.uint8)).save(folder / f"img{i:02d}.png",
                                                                                  compress_level=1)
    return folder


def start_local_cluster_run(tmp_path: Path, photos: Path) -> subprocess.Popen:
    """``poolcli max photos -o out --json --scheduler local -j 2`` in a session of its own (as a
    terminal's job), once it has written one file."""
    pytest.importorskip("distributed", reason="--scheduler local needs the dask extra")
    process = subprocess.Popen(
        [sys.executable, "-m", "poolcli", "max", str(photos), "-o", "out", "-k", "2", "--json", "--scheduler", "local",
         "-j", "2"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout is not None
    assert b'"status": "ok"' in process.stdout.readline()
    return process


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def assert_whole(folder: Path) -> None:
    for path in folder.iterdir():
        assert path.suffix == ".png" and not path.name.startswith("."), path
        with Image.open(path) as img:
            img.load()
            assert img.size == (160, 160)


@SLOW
@LINUX
@pytest.mark.parametrize("extra", [[], ["--skip-existing"]], ids=["", "skip-existing"])
def test_a_sigkilled_local_cluster_run_leaves_nothing_after_the_next_run(tmp_path, photos, extra):
    process = start_local_cluster_run(tmp_path, photos)
    everyone = [process.pid, *descendants(process.pid)]
    os.killpg(process.pid, signal.SIGKILL)  # the client and its workers, mid-write: no clean-up anywhere
    process.communicate(timeout=GUARD)
    wait_gone(everyone)
    assert not [pid for pid in everyone if alive(pid)]
    out = tmp_path / "out"
    leftover = out / ".img11.png.abcdefgh.part"  # what a worker killed mid-write leaves (if none did)
    leftover.write_bytes(b"half")
    os.utime(leftover, (time.time() - 60,) * 2)
    again = subprocess.run([sys.executable, "-m", "poolcli", "max", str(photos), "-o", "out", "-k", "2", "-q",
                            "--scheduler", "local", "-j", "2", *extra], cwd=tmp_path, capture_output=True, text=True,
                           timeout=GUARD, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert again.returncode == 0, again.stderr
    assert parts(out) == []
    assert len(list(out.iterdir())) == 12
    assert_whole(out)


@SLOW
@LINUX
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("to", ["group", "client"])
def test_a_stopped_local_cluster_run_prints_one_line_and_no_worker_traceback(tmp_path, photos, signum, to):
    """A service manager sends SIGTERM to every process of the job, a terminal its hang-up: the
    workers ignore poolcli's stop signals and the client stops them, so stderr holds exactly the
    one interruption line."""
    process = start_local_cluster_run(tmp_path, photos)
    workers = descendants(process.pid)
    if to == "group":
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    _, stderr = process.communicate(timeout=GUARD)
    assert process.returncode == 128 + signum, stderr
    lines = stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"poolcli: stopped by {signum.name} after "), stderr.decode()
    wait_gone(workers)
    assert not [pid for pid in workers if alive(pid)]
    assert parts(tmp_path / "out") == []
    assert_whole(tmp_path / "out")
    # N12: the count says what was done, results that never reached the client included
    done = int(lines[0].split(" after ", 1)[1].split(" of ", 1)[0])
    assert done == len(list((tmp_path / "out").iterdir())), lines[0]
