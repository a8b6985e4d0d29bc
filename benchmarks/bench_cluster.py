"""Folders on a Dask cluster: ``--scheduler local -j 2`` against the process pool ``-j 2``, on disk
and on a local S3 endpoint.

Usage: python benchmarks/bench_cluster.py [--count 200] [--size 1024] [--repeats 3]
       python benchmarks/bench_cluster.py --giant 20000    # the giant-image case instead (try 2000 first)

The bench_batch folder (COUNT generated SIZE x SIZE RGB PNGs) is pooled with ``max -k 2`` by
``poolcli -j 2`` and ``poolcli --scheduler local -j 2`` (whole processes, start-up of the cluster
included), then read from and written to a moto S3 server on localhost by both.  Also measured:
the LocalCluster's start-up (and shutdown) time, and the scheduler's cost per task (empty tasks
through ``client.submit`` / ``as_completed``, as poolcli submits them), and the cost per file of
``--scheduler local`` over ``-j 2`` with the start-up and shutdown taken out.  Medians of REPEATS
interleaved runs.  Target: ``--scheduler local -j 2`` within 1.15x of ``-j 2`` on a run of about
20 s.  ``--record``: appends a dated section to benchmarks/RESULTS.md.  Needs ``pip install "poolcli[dask]"
"moto[server]"``.

The giant-image case (``--giant SIDE``, issue 16): a SIDE x SIDE RGB uint8 tiled TIFF (uncompressed)
and a (3, SIDE, SIDE) Zarr array (chunks 1 x 1024 x 1024), generated band by band, on disk and on
the local S3 endpoint; ``max -k 2`` disk -> disk, S3 -> S3, and S3 -> S3 with ``--scheduler local
-j 2``, each run once (the 20000 x 20000 case is slow on 2 cores): wall time and peak RSS
(VmHWM, sampled) of the client and of each process it starts.  Targets: client and each worker
at most 400 MiB; remote at most 1.5x the disk time.  Beside it, the endpoint's own floor: the
time to read the input's bytes from it and to write the output's bytes to it with s3fs and no
pooling (the TIFF in 64 MiB ranges, the Zarr's chunk objects fetched concurrently, the output as
one multipart upload), so that a remote run can be read against what the endpoint allows; with
moto, a Python server, the floor alone is several times the disk run.  A run that fails shows
its error line.
Prints only (``--record`` appends to RESULTS.md).  The S3 server runs in a process of its own, so
that the objects it holds never count as anyone's memory.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
import common
import numpy as np
from bench_batch import make_folder


def timed(command: list[str], clear: object) -> float:
    clear()  # type: ignore[operator]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def cluster_costs(tasks: int = 2000) -> tuple[float, float, float]:
    """(start-up s, shutdown s, scheduler ms per task) of poolcli's LocalCluster of 2 workers
    (``--scheduler local -j 2``: forked workers on Linux)."""
    from distributed import as_completed

    from poolcli import cluster as poolcli_cluster

    poolcli_cluster._quiet_logs()
    started = time.perf_counter()
    client, cluster = poolcli_cluster._start_local(2)
    startup = time.perf_counter() - started
    client.gather([client.submit(int, i, pure=False) for i in range(50)])  # warm
    started = time.perf_counter()
    completed = as_completed(with_results=True)
    for i in range(tasks):
        completed.add(client.submit(int, i, pure=False))
    for _ in completed:
        pass
    per_task = (time.perf_counter() - started) / tasks * 1000
    started = time.perf_counter()
    client.close()
    cluster.close()
    return startup, time.perf_counter() - started, per_task


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def s3_server() -> Iterator[object]:
    """A moto S3 server on localhost in a process of its own, the AWS variables pointing this
    process and its children at it, and an s3fs client with a bucket "bench"."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:  # until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the moto server did not start (pip install \"moto[server]\")") from None
                time.sleep(0.1)
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                          AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
        import s3fs

        fs = s3fs.S3FileSystem()
        fs.mkdir("bench")
        yield fs
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--giant", type=int, metavar="SIDE",
                        help="the giant-image case instead: SIDE x SIDE RGB TIFF and Zarr (the target's: 20000)")
    common.add_record_option(parser)
    args = parser.parse_args()
    if args.giant:
        giant(args.giant, args.record)
        return
    python = sys.executable
    startup, shutdown, per_task = cluster_costs()
    print(f"{os.cpu_count()} CPUs; {args.count} RGB PNGs of {args.size}x{args.size}; max -k 2")
    print(f"  LocalCluster(2 workers): start-up {startup:.2f} s, shutdown {shutdown:.2f} s; "
          f"scheduler cost {per_task:.2f} ms per task")

    with s3_server() as fs, tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "photos", Path(tmp) / "out"
        source.mkdir()
        make_folder(source, args.count, args.size)
        for path in sorted(source.iterdir()):
            fs.pipe_file(f"bench/in/{path.name}", path.read_bytes())

        def clear_disk() -> None:
            shutil.rmtree(out, ignore_errors=True)

        def clear_s3() -> None:
            if fs.exists("bench/out"):
                fs.rm("bench/out", recursive=True)
            fs.invalidate_cache()

        base = [python, "-m", "poolcli", "max"]
        tail = ["-k", "2", "-q", "-j", "2"]
        runs = {
            "disk  -j 2": (base + [str(source), "-o", str(out)] + tail, clear_disk),
            "disk  --scheduler local -j 2": (base + [str(source), "-o", str(out), "--scheduler", "local"] + tail,
                                             clear_disk),
            "S3    -j 2": (base + ["s3://bench/in/", "-o", "s3://bench/out/"] + tail, clear_s3),
            "S3    --scheduler local -j 2": (base + ["s3://bench/in/", "-o", "s3://bench/out/", "--scheduler",
                                                     "local"] + tail, clear_s3),
        }
        for command, clear in runs.values():  # warm the page cache and the imports
            timed(command, clear)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, (command, clear) in runs.items():
                times[name].append(timed(command, clear))
        medians = {name: statistics.median(values) for name, values in times.items()}
        rows = ["| run | wall s | images/s |", "|---|---:|---:|"]
        for name, seconds in medians.items():
            print(f"  {name:30s} {seconds:7.2f} s  {args.count / seconds:6.1f} images/s")
            rows.append(f"| `{' '.join(name.split())}` | {seconds:.2f} | {args.count / seconds:.1f} |")
        notes = [f"LocalCluster(2 workers): start-up {startup:.2f} s, shutdown {shutdown:.2f} s; "
                 f"scheduler cost {per_task:.2f} ms per (empty) task"]
        for where in ("disk", "S3  "):
            local, pool = medians[f"{where}  --scheduler local -j 2"], medians[f"{where}  -j 2"]
            per_file = (local - pool - startup - shutdown) / args.count * 1000
            notes.append(f"{where.strip()}: --scheduler local -j 2 time / -j 2 time: {local / pool:.3f} "
                         f"(target <= 1.15); cost per file beyond start-up and shutdown: {per_file:.1f} ms")
            print(f"  {notes[-1]}")
    if args.record:
        append_results(args, rows, notes)


# --------------------------------------------------------------------------- one giant image

GIANT_RSS_TARGET_MIB = 400
GIANT_TIME_RATIO_TARGET = 1.5
BAND = 1024  # rows generated at once, and the Zarr chunk's side


def bands(side: int) -> Iterator[tuple[int, np.ndarray]]:
    """(top, rows) of a photo-like SIDE x SIDE RGB uint8 image (smooth waves plus noise), band by
    band, so that the image is never whole in memory."""
    rng = np.random.default_rng(0)
    xs = np.arange(side, dtype=np.float32)[None, :, None]
    phase = np.arange(3, dtype=np.float32)[None, None, :]
    for top in range(0, side, BAND):
        ys = np.arange(top, min(top + BAND, side), dtype=np.float32)[:, None, None]
        wave = np.sin(xs / 700 + phase) * np.cos(ys / 900 - phase)
        noise = rng.integers(0, 16, (len(ys), side, 3), dtype=np.uint8)
        yield top, ((wave * 0.4 + 0.5) * 239).astype(np.uint8) + noise


def make_giant(folder: Path, side: int) -> tuple[Path, Path]:
    """big.tif (tiled 256 x 256, uncompressed) and big.zarr ((3, SIDE, SIDE), chunks 1 x BAND x BAND)."""
    import tifffile
    import zarr

    tif, zarr_path = folder / "big.tif", folder / "big.zarr"
    array = zarr.create_array(store=str(zarr_path), shape=(3, side, side), dtype=np.uint8, chunks=(1, BAND, BAND))

    def tiles() -> Iterator[np.ndarray]:
        for top, rows in bands(side):
            array[:, top: top + len(rows)] = rows.transpose(2, 0, 1)  # the same pixels into the Zarr
            for offset in range(0, len(rows), 256):
                strip = rows[offset: offset + 256]
                for left in range(0, side, 256):
                    tile = np.zeros((256, 256, 3), dtype=np.uint8)
                    part = strip[:, left: left + 256]
                    tile[: part.shape[0], : part.shape[1]] = part
                    yield tile

    tifffile.imwrite(tif, tiles(), shape=(side, side, 3), dtype=np.uint8, tile=(256, 256), bigtiff=True,
                     photometric="rgb")
    return tif, zarr_path


@dataclass
class Measured:
    """One run: exit code, wall seconds, its error line, and the peak RSS (MiB) of the client and
    of each process it started (by label)."""

    code: int
    seconds: float
    error: str
    client_mib: float
    others_mib: list[tuple[str, float]] = field(default_factory=list)


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                children = [int(p) for p in task.read_text().split()]
                found += children
                todo += children
    return found


def _peak_mib(pid: int) -> float | None:
    """VmHWM: the process's own peak RSS since its exec (a forked child's ru_maxrss would count its
    parent's pages)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _label(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"
    for helper in ("forkserver", "resource_tracker", "semaphore_tracker"):
        if helper in command:
            return helper
    return "worker"


def measure(command: list[str]) -> Measured:
    """Run ``command``, sampling every 50 ms the peak RSS of it and of every process below it."""
    peaks: dict[int, float] = {}
    labels: dict[int, str] = {}
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        while process.poll() is None:
            for pid in [process.pid, *_descendants(process.pid)]:
                peak = _peak_mib(pid)
                if peak is not None:
                    peaks[pid] = max(peaks.get(pid, 0.0), peak)
                    labels.setdefault(pid, _label(pid) if pid != process.pid else "client")
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        stderr.seek(0)
        lines = stderr.read().decode(errors="replace").strip().splitlines()
    others = sorted(((labels[pid], mib) for pid, mib in peaks.items() if pid != process.pid), key=lambda o: -o[1])
    return Measured(process.returncode, seconds, lines[-1] if lines else "", peaks.get(process.pid, 0.0), others)


def same_as_disk(fs: Any, output: str, folder: Path, side: int) -> str:
    """"" when ``output`` exists (and, up to 4096 x 4096, holds the pixels of the disk run's output,
    which the disk run of the same format wrote before it), else what is wrong."""
    import io

    import tifffile
    import zarr

    fs.invalidate_cache()
    if not output.startswith("s3://"):
        return "" if Path(output).exists() else "exit 0 but no output written"
    if not fs.exists(output[len("s3://"):]):
        return "exit 0 but no output written"
    if side > 4096:
        return ""
    if output.endswith(".tif"):
        with fs.open(output[len("s3://"):], "rb") as handle:
            there = tifffile.imread(io.BytesIO(handle.read()))
        here = tifffile.imread(folder / "disk-big.tif")
    else:
        there = zarr.open_array(fs.get_mapper(output[len("s3://"):]), mode="r")[...]
        here = zarr.open_array(str(folder / "disk-big.zarr"), mode="r")[...]
    return "" if np.array_equal(here, there) else "pixels differ from the disk run's"


def transfer_floor(fs: Any, key: str, out_bytes: int) -> tuple[float, float]:
    """Seconds to read every byte of ``key`` (a file, or a folder's objects) from the endpoint,
    and to write ``out_bytes`` to it: what any remote run must pay, with no pooling."""
    fs.invalidate_cache()
    started = time.perf_counter()
    if fs.isdir(key):
        keys = fs.find(key)
        for first in range(0, len(keys), 64):  # concurrent GETs, a batch at a time
            fs.cat(keys[first: first + 64])
    else:
        with fs.open(key, "rb", block_size=64 << 20) as handle:
            while handle.read(64 << 20):
                pass
    down = time.perf_counter() - started
    started = time.perf_counter()
    with fs.open("bench/floor.bin", "wb", block_size=8 << 20) as handle:
        block = bytes(8 << 20)
        for offset in range(0, out_bytes, len(block)):
            handle.write(block[: out_bytes - offset])
    up = time.perf_counter() - started
    fs.rm("bench/floor.bin")
    return down, up


def giant(side: int, record: Path | None) -> None:
    """The giant-image case: see the module's docstring."""
    python = [sys.executable, "-m", "poolcli", "max"]
    with s3_server() as fs, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        tif, zarr_path = make_giant(folder, side)
        fs.put_file(str(tif), "bench/big.tif")
        fs.put(str(zarr_path), "bench/big.zarr", recursive=True)
        print(f"{os.cpu_count()} CPUs; {side}x{side} RGB uint8 ({3 * side * side / 2**20:.0f} MiB of pixels) as a "
              f"tiled TIFF and a Zarr; made and uploaded in {time.perf_counter() - started:.0f} s; max -k 2")
        out = folder / "out"
        runs: dict[str, list[str]] = {}
        for kind, local, remote in (("TIFF", tif, "s3://bench/big.tif"), ("Zarr", zarr_path, "s3://bench/big.zarr")):
            suffix = ".tif" if kind == "TIFF" else ".zarr"
            runs[f"{kind} disk -> disk"] = [*python, str(local), "-k", "2", "-q", "-o", str(out / f"big{suffix}")]
            runs[f"{kind} S3 -> S3"] = [*python, remote, "-k", "2", "-q", "-o", f"s3://bench/out/big{suffix}"]
            runs[f"{kind} S3 -> S3 --scheduler local -j 2"] = [*runs[f"{kind} S3 -> S3"], "--scheduler", "local",
                                                               "-j", "2"]
        results: dict[str, Measured] = {}
        for name, command in runs.items():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            if fs.exists("bench/out"):
                fs.rm("bench/out", recursive=True)
            fs.invalidate_cache()
            results[name] = measured = measure(command)
            if measured.code == 0:
                measured.error = same_as_disk(fs, command[command.index("-o") + 1], folder, side)
                measured.code = 0 if not measured.error else -1
            for kept in out.glob("big.*"):  # the disk run's output, for the remote runs to equal
                kept.rename(folder / f"disk-{kept.name}")
            others = ", ".join(f"{label} {mib:.0f}" for label, mib in measured.others_mib) or "-"
            status = "ok" if measured.code == 0 else \
                measured.error if measured.code == -1 else f"exit {measured.code}: {measured.error[:150]}"
            print(f"  {name:38s} {measured.seconds:7.1f} s  client {measured.client_mib:5.0f} MiB  "
                  f"others (MiB): {others}  {status}", flush=True)
        floors = {kind: transfer_floor(fs, key, 3 * (side // 2) ** 2)
                  for kind, key in (("TIFF", "bench/big.tif"), ("Zarr", "bench/big.zarr"))}
    verdicts = []
    for name, measured in results.items():
        worst = max([measured.client_mib, *(mib for label, mib in measured.others_mib if label == "worker")])
        verdicts.append(f"{name}: " + ("failed" if measured.code else
                                       f"peak {worst:.0f} MiB (target <= {GIANT_RSS_TARGET_MIB}: "
                                       f"{'met' if worst <= GIANT_RSS_TARGET_MIB else 'MISSED'})"))
    for kind in ("TIFF", "Zarr"):
        disk = results[f"{kind} disk -> disk"]
        down, up = floors[kind]
        verdicts.append(f"{kind} S3 transfer floor (no pooling): {down:.1f} s down + {up:.1f} s up = "
                        f"{down + up:.1f} s, {(down + up) / disk.seconds:.2f}x the disk run")
        for remote in (f"{kind} S3 -> S3", f"{kind} S3 -> S3 --scheduler local -j 2"):
            if disk.code == 0 and results[remote].code == 0:
                ratio = results[remote].seconds / disk.seconds
                verdicts.append(f"{remote} / disk time: {ratio:.2f} (target <= {GIANT_TIME_RATIO_TARGET}: "
                                f"{'met' if ratio <= GIANT_TIME_RATIO_TARGET else 'MISSED'}); "
                                f"{results[remote].seconds / (down + up):.2f}x the transfer floor")
    for verdict in verdicts:
        print(f"  {verdict}")
    if record is not None:
        figures = "; ".join(f"{name}: {m.seconds:.1f} s, client {m.client_mib:.0f} MiB, "
                            f"workers {[round(mib) for label, mib in m.others_mib if label == 'worker']} MiB"
                            + ("" if m.code == 0 else f" (exit {m.code}: {m.error})") for name, m in results.items())
        common.append_result(f"bench_cluster --giant {side}", figures, "; ".join(verdicts), results=record)


def append_results(args: argparse.Namespace, rows: list[str], notes: list[str]) -> None:
    """A dated section at the end of RESULTS.md (``--record FILE``: of FILE)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    common.record(f"\n## bench_cluster.py, {when} ({platform.machine()}, {os.cpu_count()} CPUs, Python "
                  f"{platform.python_version()}; load average {load:.1f} at the end)\n\n"
                  f"{args.count} RGB PNGs of {args.size}x{args.size}, `max -k 2`, medians of {args.repeats}.\n\n"
                  + "\n".join(rows) + "\n\n" + "\n".join(f"- {note}" for note in notes) + "\n", args.record)


if __name__ == "__main__":
    main()
