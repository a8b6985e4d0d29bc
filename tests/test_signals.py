"""Signals, workers and leftovers, with real processes and real signals (Linux: /proc, pidfd).

Every wait is on an event (a JSON line, a process ending, a file appearing) with a generous
timeout only as a guard against a hang; nothing sleeps.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from poolcli import paths

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(os, "pidfd_open"),
                                reason="needs Linux /proc and pidfd")

GUARD = 60  # seconds: only a guard against a hang, never a measured threshold
COUNT = 12
FULL = os.environ.get("CI") == "true"  # every variant in CI; the telling ones by default


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """COUNT random 320x320 RGB PNGs (slow enough to encode that a run is under way for a while)."""
    folder = tmp_path_factory.mktemp("signals") / "photos"
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i in range(COUNT):
        Image.fromarray(rng.integers(0, 256, (320, 320, 3), dtype=np.uint8)).save(folder / f"img{i:02d}.png",
                                                                                  compress_level=1)
    return folder


def start(tmp_path: Path, *args: str, group: bool = False) -> subprocess.Popen:
    """poolcli ARGS; with ``group``, in a process group of its own (as a terminal's foreground job)."""
    # Unbuffered: a line read before communicate() must not take the next lines with it.
    return subprocess.Popen([sys.executable, "-m", "poolcli", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0, start_new_session=group, preexec_fn=default_sigint)


def default_sigint() -> None:
    """Ctrl-C as in a terminal even when the tests run as a background job, whose SIGINT is
    ignored (poolcli, like any program, leaves an ignored signal ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_batch(tmp_path: Path, photos: Path, *extra: str, group: bool = False) -> tuple[subprocess.Popen, list[int]]:
    """A -j 2 batch that has finished one file (so both workers exist); returns it and its workers."""
    process = start(tmp_path, "max", str(photos), "-o", "out", "-k", "2", "-j", "2", "--json", *extra, group=group)
    first = process.stdout.readline()
    assert b'"status": "ok"' in first
    workers = children(process.pid)
    assert len(workers) == 2
    return process, workers


def children(pid: int) -> list[int]:
    found = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            found += [int(p) for p in Path(task).read_text().split()]
        except OSError:
            continue  # a thread that has just ended
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: list[int], timeout: float = GUARD) -> None:
    """Wait until every process in ``pids`` has ended (pidfd: readable when the process exits)."""
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            select.select([fd], [], [], timeout)
        finally:
            os.close(fd)


def temporary_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*.part")] if folder.exists() else []


def assert_whole(folder: Path, size: tuple[int, int] = (160, 160)) -> None:
    for path in folder.iterdir():
        assert path.suffix == ".png" and not path.name.startswith("."), path
        with Image.open(path) as img:
            img.load()
            assert img.size == size


def expected_max2(path: Path) -> np.ndarray:
    pixels = np.asarray(Image.open(path))
    height, width, channels = pixels.shape
    return pixels.reshape(height // 2, 2, width // 2, 2, channels).max(axis=(1, 3))


@pytest.mark.parametrize("pattern", [
    ("SIGINT", "SIGINT"),
    pytest.param(("SIGINT", "SIGINT", "SIGINT"), marks=pytest.mark.skipif(not FULL, reason="CI only")),
    pytest.param(("SIGINT", "wait", "SIGINT"), marks=pytest.mark.skipif(not FULL, reason="CI only")),
    ("SIGINT", "SIGINT", "wait", "SIGINT"),
], ids=["twice", "three-times", "twice-with-gap", "three-times-with-gap"])
def test_repeated_ctrl_c_ends_in_130_without_traceback_or_orphans(tmp_path, photos, pattern):
    process, workers = start_batch(tmp_path, photos)
    for step in pattern:
        if step == "wait":  # the gap: until the first signal has made a worker end
            # (a worker that ended, even between a check and the open, ends the gap: open each
            # and take a vanished one as ended; a zombie's pidfd is ready at once)
            fds, ended = [], False
            for pid in workers:
                try:
                    fds.append(os.pidfd_open(pid))
                except ProcessLookupError:
                    ended = True
            if not ended:
                select.select(fds, [], [], GUARD)
            for fd in fds:
                os.close(fd)
        else:
            process.send_signal(getattr(signal, step))
    _, stderr = process.communicate(timeout=GUARD)
    assert process.returncode == 130, stderr
    assert b"Traceback" not in stderr
    assert stderr.decode().splitlines()[-1].startswith("poolcli: interrupted after ")
    assert not [pid for pid in workers if alive(pid)]
    assert temporary_files(tmp_path / "out") == []
    assert_whole(tmp_path / "out")


@pytest.mark.parametrize("signum", [
    signal.SIGINT,
    pytest.param(signal.SIGHUP, marks=pytest.mark.skipif(not FULL, reason="CI only")),
    pytest.param(signal.SIGTERM, marks=pytest.mark.skipif(not FULL, reason="CI only")),
])
def test_a_signal_to_the_whole_process_group(tmp_path, photos, signum):
    """A terminal sends Ctrl-C (twice, here) and its hang-up to every process of the foreground job;
    a service manager sends SIGTERM to all of them: the workers too, not just poolcli."""
    process, workers = start_batch(tmp_path, photos, group=True)
    os.killpg(process.pid, signum)
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)
    _, stderr = process.communicate(timeout=GUARD)
    assert process.returncode == 128 + signum, stderr
    assert b"Traceback" not in stderr and len(stderr.splitlines()) == 1
    assert not [pid for pid in workers if alive(pid)]
    assert temporary_files(tmp_path / "out") == []
    assert_whole(tmp_path / "out")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_stop_a_batch_like_ctrl_c(tmp_path, photos, signum, code):
    process, workers = start_batch(tmp_path, photos)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=GUARD)
    assert process.returncode == code
    assert f"poolcli: stopped by {signum.name} after ".encode() in stderr and b"Traceback" not in stderr
    assert not [pid for pid in workers if alive(pid)]
    assert temporary_files(tmp_path / "out") == []
    assert_whole(tmp_path / "out")


def test_sigterm_during_a_large_single_write_leaves_no_part(tmp_path):
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (2000, 2000, 3), dtype=np.uint8)).save(tmp_path / "big.bmp")
    (tmp_path / "out").mkdir()
    process = start(tmp_path, "max", "big.bmp", "-k", "1", "-o", "out/big.png", "-q")
    deadline = time.monotonic() + GUARD
    while not temporary_files(tmp_path / "out"):  # the event: the temporary file appears
        assert process.poll() is None, "the write ended before the signal could be sent"
        assert time.monotonic() < deadline
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=GUARD)
    assert process.returncode == 143
    assert stderr.decode().splitlines() == ["poolcli: stopped by SIGTERM after 0 of 1 inputs"]
    assert list((tmp_path / "out").iterdir()) == []


def test_workers_die_with_a_killed_parent(tmp_path, photos):
    process, workers = start_batch(tmp_path, photos)
    process.kill()  # SIGKILL: no cleanup in the parent at all
    process.communicate(timeout=GUARD)
    wait_gone(workers)
    assert not [pid for pid in workers if alive(pid)]
    assert temporary_files(tmp_path / "out") == []  # each worker removed its own temporary file


def test_a_killed_worker_fails_no_file(tmp_path, photos):
    process, workers = start_batch(tmp_path, photos)
    os.kill(workers[0], signal.SIGKILL)  # mid-batch: it has a file (one job at a time, always busy)
    stdout, stderr = process.communicate(timeout=GUARD)
    assert process.returncode == 0, stderr
    records = [json.loads(line) for line in stdout.splitlines()] + [{"status": "ok"}]  # + the line read
    assert len(records) == COUNT and {r["status"] for r in records} == {"ok"}
    assert temporary_files(tmp_path / "out") == []
    for path in sorted(photos.iterdir()):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / path.name)), expected_max2(path))


def test_a_file_whose_worker_dies_twice_fails_with_a_reason(tmp_path, rng):
    """Every worker is killed as soon as it appears: each file is tried twice, then reported."""
    folder = tmp_path / "big"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (1000, 1000, 3), dtype=np.uint8)).save(folder / name)
    process = start(tmp_path, "max", "big", "-o", "out", "-k", "2", "-j", "2", "--json")
    killed: set[int] = set()
    deadline = time.monotonic() + GUARD
    while process.poll() is None:  # the events: a worker process appearing
        assert time.monotonic() < deadline
        for pid in set(children(process.pid)) - killed:
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
    stdout, stderr = process.communicate(timeout=GUARD)
    records = {Path(r["input"]).name: r for r in map(json.loads, stdout.splitlines())}
    assert set(records) == {"a.png", "b.png"}
    failed = [r for r in records.values() if r["status"] == "error"]
    assert failed and process.returncode == 1 and b"Traceback" not in stderr
    for record in failed:
        assert record["error"] == ("a worker process died 2 times while pooling this file "
                                   "(killed by SIGKILL, perhaps by the out-of-memory killer)")
    assert len(stderr.decode().splitlines()) == len(failed)  # one line per failed file
    assert temporary_files(tmp_path / "out") == []
    written = sorted(p.name for p in (tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else []
    assert written == sorted(name for name, r in records.items() if r["status"] == "ok")


def test_stale_temporary_files_of_these_outputs_are_removed(invoke, tmp_path, photos):
    shutil.copytree(photos, tmp_path / "photos")
    out = tmp_path / "out"
    out.mkdir()
    stale = [".img00.png.abcd_123.part", ".img01.png.zzzzzzzz.part"]
    kept = [".other.png.abcd1234.part",  # another output's: maybe another run's
            "img05.png.part", ".img02.png.toolongrandom.part", "notes.txt"]
    fresh = ".img03.png.newernew.part"  # written after this run started: another run's, in progress
    for name in [*stale, *kept, fresh]:
        (out / name).write_bytes(b"half an image")
    past, future = time.time() - 3600, time.time() + 3600
    for name in [*stale, *kept]:
        os.utime(out / name, (past, past))
    os.utime(out / fresh, (future, future))
    (out / "img04.png").write_bytes(b"")  # what a crash can leave: not a finished output

    result = invoke("max", "photos", "-o", "out", "-k", "2", "--skip-existing", "-q", "-j", "1")
    assert result.exit_code == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert not set(stale) & set(names)
    assert set(kept) | {fresh} <= set(names)
    assert Image.open(out / "img04.png").size == (160, 160)  # the empty file was not counted as done


def test_skip_existing_rerun_after_a_killed_run_leaves_no_part(invoke, tmp_path, photos):
    process, workers = start_batch(tmp_path, photos)
    process.kill()
    process.communicate(timeout=GUARD)
    wait_gone(workers)  # they have stopped writing
    out = tmp_path / "out"
    leftover = out / ".img11.png.abcdefgh.part"  # as a SIGKILLed single-process run would leave
    leftover.write_bytes(b"half")
    os.utime(leftover, (time.time() - 60,) * 2)
    rerun = invoke("max", str(photos), "-o", "out", "-k", "2", "-j", "2", "--skip-existing", "-q")
    assert rerun.exit_code == 0, rerun.stderr
    assert temporary_files(out) == []
    assert len(list(out.iterdir())) == COUNT
    assert_whole(out)


@pytest.mark.skipif(not FULL, reason="CI only")
def test_ignored_signals_stay_ignored(tmp_path, photos):
    """Under nohup (SIGHUP ignored) a hang-up does not stop the run."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
                               "from poolcli.cli import main; sys.argv[0] = 'poolcli'; main()",
         "max", str(photos), "-o", "out", "-k", "2", "-j", "2", "--json"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    assert b'"status": "ok"' in process.stdout.readline()
    process.send_signal(signal.SIGHUP)
    _, stderr = process.communicate(timeout=GUARD)
    assert process.returncode == 0, stderr
    assert len(list((tmp_path / "out").iterdir())) == COUNT


def test_stale_temporary_files_of_a_long_name(tmp_path):
    """Names too long for ".NAME.XXXXXXXX.part" get ".poolcli-HASH.XXXXXXXX.part"; both are found."""
    long_name = "x" * 250 + ".png"
    digest = hashlib.sha256(long_name.encode()).hexdigest()[:16]
    stale = tmp_path / f".poolcli-{digest}.k2k2k2k2.part"
    other = tmp_path / ".poolcli-0123456789abcdef.k2k2k2k2.part"
    for path in (stale, other):
        path.write_bytes(b"half")
    paths.remove_temp_files([str(tmp_path / long_name)], older_than=time.time() + 60)
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name]


def test_the_watchdog_ends_a_worker_whose_parent_died(tmp_path):
    """Where there is no parent-death signal (not Linux), a watchdog thread notices the new parent."""
    code = ("import os, signal, sys\n"
            "from poolcli import batch\n"
            "parent = os.getpid()\n"
            "child = os.fork()\n"
            "if child == 0:\n"
            "    sys.platform = 'darwin'  # as elsewhere: no prctl\n"
            "    batch._die_with_parent(parent)\n"
            "    while True:\n"
            "        signal.pause()  # until the watchdog's SIGTERM ends it\n"
            "print(child, flush=True)\n"
            "signal.pause()\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, bufsize=0)
    child = int(parent.stdout.readline())
    parent.kill()
    parent.communicate(timeout=GUARD)
    wait_gone([child])
    assert not alive(child)
