"""Folders on a Dask cluster: ``--scheduler local -j 2`` against the process pool ``-j 2``, on disk
and on a local S3 endpoint.

Usage: python benchmarks/bench_cluster.py [--count 200] [--size 1024] [--repeats 3] [--record [FILE]]

The bench_batch folder (COUNT generated SIZE x SIZE RGB PNGs) is pooled with ``max -k 2`` by
``poolcli -j 2`` and ``poolcli --scheduler local -j 2`` (whole processes, start-up of the cluster
included), then read from and written to a moto S3 server on localhost by both.  Also measured:
the LocalCluster's start-up (and shutdown) time, and the scheduler's cost per task (empty tasks
through ``client.submit`` / ``as_completed``, as poolcli submits them), and the cost per file of
``--scheduler local`` over ``-j 2`` with the start-up and shutdown taken out.  Medians of REPEATS
interleaved runs.  Target: ``--scheduler local -j 2`` within 1.15x of ``-j 2`` on a run of about
20 s.  ``--record``: appends a dated section to benchmarks/RESULTS.md.  Needs ``pip install "poolcli[dask]"
"moto[server]"``.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
import common
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    common.add_record_option(parser)
    args = parser.parse_args()
    python = sys.executable
    startup, shutdown, per_task = cluster_costs()
    print(f"{os.cpu_count()} CPUs; {args.count} RGB PNGs of {args.size}x{args.size}; max -k 2")
    print(f"  LocalCluster(2 workers): start-up {startup:.2f} s, shutdown {shutdown:.2f} s; "
          f"scheduler cost {per_task:.2f} ms per task")

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.mkdir("bench")
    try:
        with tempfile.TemporaryDirectory() as tmp:
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
    finally:
        server.stop()
    if args.record:
        append_results(args, rows, notes)


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
