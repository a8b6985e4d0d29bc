"""Past one machine: folders on a real Dask cluster (one LocalCluster of 2 worker processes per
session), inputs and outputs on a real S3 endpoint (moto's server on localhost, s3fs as the
client), worker deaths, Ctrl-C, and the lean start without Dask."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from poolcli import batch, listing
from tests.conftest import files_in, free_port, json_lines, upload

distributed = pytest.importorskip("distributed")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def scheduler(s3_endpoint):
    """The address of a LocalCluster of 2 single-threaded worker processes (started after the S3
    variables are set, so that the workers inherit them)."""
    import dask

    # forkserver: workers (and their restarts) start from a clean process in half the time of spawn
    dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    yield cluster.scheduler_address, client, cluster
    client.close()
    cluster.close()


@pytest.fixture
def photos(tmp_path, rng) -> Path:
    """photos/ with a nested folder, a bad file, a hidden file, an array and names that sort
    differently as keys and as names (a folder "a" beside "a b.png" and "a.png")."""
    root = tmp_path / "photos"
    (root / "a" / "deep").mkdir(parents=True)
    (root / ".hidden").mkdir()

    def image(path: Path, size=(10, 14)):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)

    for name in ("a b.png", "a.png", "a/x.jpg", "a/deep/y.png", "z.PNG", ".hidden/h.png", ".dot.png"):
        image(root / name)
    (root / "bad.png").write_bytes(b"not a png")
    (root / "notes.txt").write_text("ignored")
    np.save(root / "a" / "m.npy", np.arange(16.0).reshape(4, 4))
    return root


def run_cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "poolcli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


def comparable(stdout: str) -> dict[str, dict]:
    """JSON lines by input, without the timing."""
    return {r["input"]: {k: v for k, v in r.items() if k != "seconds"} for r in json_lines(stdout)}


def same_tree(left: Path, right: Path) -> None:
    assert files_in(left) == files_in(right)
    for path in left.rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (right / path.relative_to(left)).read_bytes(), path


# --------------------------------------------------------------------------- listing


def key_order(entries):
    return sorted(entries, key=lambda e: e[0] + "/" if e[1] else e[0])


def test_key_order_becomes_name_order():
    entries = [("a b.png", False), ("a.png", False), ("a", True), ("a0.png", False), ("b", True)]
    assert list(listing.by_name(key_order(entries))) == sorted(entries)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(st.sampled_from("ab .-/0é"), min_size=1, max_size=5).filter(lambda n: "/" not in n),
                       st.booleans(), max_size=12))
def test_any_level_in_key_order_comes_out_sorted_by_name(level):
    entries = list(level.items())
    assert list(listing.by_name(key_order(entries))) == sorted(entries)


def test_s3_and_memory_listings_equal_the_local_walk(s3, photos):
    fs, bucket = s3
    upload(fs, photos, bucket + "/in")
    local = [Path(p).relative_to(photos).as_posix() for p in batch.walk(str(photos), recursive=True)]
    assert local == ["a/deep/y.png", "a/m.npy", "a/x.jpg", "a b.png", "a.png", "bad.png", "z.PNG"]
    found = list(listing.walk_url(f"s3://{bucket}/in/", True, listing.is_candidate_name))
    assert found == [f"s3://{bucket}/in/{name}" for name in local]
    flat = list(listing.walk_url(f"s3://{bucket}/in", False, listing.is_candidate_name))
    assert flat == [f"s3://{bucket}/in/{name}" for name in local if "/" not in name]
    import fsspec

    memory = fsspec.filesystem("memory")
    upload(memory, photos, "/walk")
    assert list(listing.walk_url("memory://walk", True, listing.is_candidate_name)) == \
        [f"memory://walk/{name}" for name in local]
    assert list(listing.walk_url(photos.as_uri(), True, listing.is_candidate_name)) == \
        [f"{photos.as_uri()}/{name}" for name in local]


# --------------------------------------------------------------------------- a cluster


def test_cluster_gives_the_files_and_json_lines_of_one_process(scheduler, photos, tmp_path, invoke):
    one = invoke("max", "photos", "-r", "-o", "one", "-k", "2", "-j", "1", "--json")
    many = invoke("max", "photos", "-r", "-o", "many", "-k", "2", "--json", "--scheduler", scheduler[0])
    assert one.exit_code == many.exit_code == 1  # bad.png failed, the others did not stop
    same_tree(tmp_path / "one", tmp_path / "many")
    expected = {k: {**v, "output": v["output"] and v["output"].replace("one/", "many/", 1)}
                for k, v in comparable(one.stdout).items()}
    assert comparable(many.stdout) == expected
    assert many.stderr.strip() == "poolcli: error: photos/bad.png: not an image file Pillow can read"


def test_scheduler_local_starts_and_stops_its_own_cluster(photos, tmp_path, invoke):
    assert invoke("avg", "photos", "-r", "-o", "one", "-k", "2", "-j", "1", "-q").exit_code == 1
    own = run_cli("avg", "photos", "-r", "-o", "own", "-k", "2", "--scheduler", "local", "-j", "2", "-q", cwd=tmp_path)
    assert own.returncode == 1
    assert own.stderr.strip() == "poolcli: error: photos/bad.png: not an image file Pillow can read"
    same_tree(tmp_path / "one", tmp_path / "own")


def test_skip_existing_and_the_dask_setting(scheduler, photos, tmp_path, monkeypatch, invoke):
    address, _, cluster = scheduler
    (photos / "bad.png").unlink()
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)  # no --scheduler: Dask's own setting
    first = invoke("avg", "photos", "-r", "-o", "out", "-k", "2", "--json")
    assert first.exit_code == 0
    assert "pool_one" in cluster.scheduler.task_prefixes  # the files went to the cluster
    (tmp_path / "out" / "a.png").unlink()
    again = invoke("avg", "photos", "-r", "-o", "out", "-k", "2", "--json", "--skip-existing")
    statuses = {r["input"]: r["status"] for r in json_lines(again.stdout)}
    assert statuses.pop("photos/a.png") == "ok"
    assert set(statuses.values()) == {"skipped"} and len(statuses) == 5
    assert again.exit_code == 0


def test_collisions_are_refused_before_any_task(scheduler, photos, tmp_path, invoke):
    (photos / "a.jpg").write_bytes((photos / "a.png").read_bytes())
    result = invoke("max", "photos", "-o", "out", "-k", "2", "--format", "tif", "--scheduler", scheduler[0])
    assert result.exit_code == 2
    assert "photos/a.jpg and photos/a.png would both be written to out/a.tif" in result.stderr
    assert not (tmp_path / "out").exists()


def _run_on_cluster(address: str, tmp_path, rng, count: int, side: int) -> subprocess.Popen:
    """``poolcli max many -o out --json --scheduler ADDRESS`` as a real subprocess, over ``count``
    random RGB PNGs of ``side`` x ``side`` in ``tmp_path/many``."""
    source = tmp_path / "many"
    source.mkdir()
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(source / f"i{i:02d}.png",
                                                                                     compress_level=1)
    return subprocess.Popen(
        [sys.executable, "-m", "poolcli", "max", "many", "-o", "out", "-k", "2", "--json", "--scheduler", address],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_a_worker_killed_mid_run_costs_only_time(scheduler, tmp_path, rng):
    address, client, _ = scheduler
    source = tmp_path / "many"
    process = _run_on_cluster(address, tmp_path, rng, count=12, side=128)
    first = process.stdout.readline()
    assert b'"status": "ok"' in first  # under way
    victim = sorted(client.run(os.getpid).values())[0]
    os.kill(victim, signal.SIGKILL)
    rest, stderr = process.stdout.read(), process.stderr.read()  # (communicate would lose readline's buffer)
    assert process.wait(timeout=60) == 0, stderr
    assert len(json_lines((first + rest).decode())) == 12
    for i in range(12):
        pixels = np.asarray(Image.open(source / f"i{i:02d}.png"))
        expected = pixels.reshape(64, 2, 64, 2, 3).max(axis=(1, 3))
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / f"i{i:02d}.png")), expected)


def test_ctrl_c_cancels_and_leaves_nothing_partial(scheduler, tmp_path, rng):
    address, client, _ = scheduler
    process = _run_on_cluster(address, tmp_path, rng, count=24, side=300)
    assert b'"status": "ok"' in process.stdout.readline()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert b"poolcli: interrupted after" in stderr and b"Traceback" not in stderr
    # A task cancelled while running still ends on its worker: wait for one more task on each.
    workers = list(client.nthreads())
    client.gather([client.submit(int, 1, workers=[w], pure=False) for w in workers])
    written = sorted((tmp_path / "out").iterdir())
    assert 1 <= len(written) < 24
    assert all(not p.name.startswith(".") for p in written)
    for path in written:
        with Image.open(path) as img:
            img.load()
            assert img.size == (150, 150)


def test_unreachable_scheduler_is_one_line(invoke, photos, monkeypatch):
    from poolcli import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 0.5)
    address = f"tcp://127.0.0.1:{free_port()}"
    result = invoke("max", "photos", "-o", "out", "-k", "2", "--scheduler", address)
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"poolcli: error: {address}: cannot reach the Dask scheduler")


# --------------------------------------------------------------------------- S3


def test_s3_prefix_in_and_out_resume_on_the_cluster(scheduler, s3, photos, tmp_path, invoke):
    fs, bucket = s3
    (photos / "bad.png").unlink()
    upload(fs, photos, bucket + "/in")
    assert invoke("max", "photos", "-r", "-o", "local", "-k", "2", "-j", "1", "-q").exit_code == 0
    result = invoke("max", f"s3://{bucket}/in/", "-r", "-o", f"s3://{bucket}/out/", "-k", "2", "--json",
                    "--scheduler", scheduler[0])
    assert result.exit_code == 0, result.stderr
    records = {r["input"]: r for r in json_lines(result.stdout)}
    assert records[f"s3://{bucket}/in/a/x.jpg"]["output"] == f"s3://{bucket}/out/a/x.jpg"
    fs.invalidate_cache()
    written = sorted(fs.find(f"{bucket}/out"))
    assert [p.split("/out/", 1)[1] for p in written] == files_in_local(tmp_path / "local")
    for path in written:
        assert fs.cat_file(path) == (tmp_path / "local" / path.split("/out/", 1)[1]).read_bytes()
    fs.rm_file(f"{bucket}/out/a.png")
    again = invoke("max", f"s3://{bucket}/in/", "-r", "-o", f"s3://{bucket}/out/", "-k", "2", "--json",
                   "--skip-existing", "--scheduler", scheduler[0])
    statuses = {r["input"]: r["status"] for r in json_lines(again.stdout)}
    assert statuses.pop(f"s3://{bucket}/in/a.png") == "ok" and set(statuses.values()) == {"skipped"}


def files_in_local(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_s3_failures_leave_no_objects_and_no_secrets(s3, photos, invoke):
    fs, bucket = s3
    upload(fs, photos, bucket + "/in")
    result = invoke("max", f"s3://{bucket}/in/bad.png", f"s3://{bucket}/in/a.png", "-o", "s3://no-such-bucket/out/",
                    "-k", "2", "-j", "1", "--json", "--storage-options", '{"secret": "SHH-0123", "key": "testing"}')
    assert result.exit_code == 1
    records = {r["input"]: r for r in json_lines(result.stdout)}
    assert records[f"s3://{bucket}/in/bad.png"]["error"] == "not an image file Pillow can read"
    assert records[f"s3://{bucket}/in/a.png"]["status"] == "error"
    assert "SHH-0123" not in result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 2  # one line per failed file
    good = invoke("max", f"s3://{bucket}/in/", "-o", f"s3://{bucket}/out/", "-k", "2", "-j", "1", "-q")
    assert good.exit_code == 1
    fs.invalidate_cache()
    assert sorted(p.rsplit("/", 1)[1] for p in fs.find(f"{bucket}/out")) == ["a b.png", "a.png", "z.PNG"]


def test_local_files_to_s3_and_back(s3, photos, tmp_path, invoke):
    _, bucket = s3
    assert invoke("max", "photos/a.png", "-k", "2", "-o", f"s3://{bucket}/one.png", "-q").exit_code == 0
    assert invoke("max", f"s3://{bucket}/one.png", "-k", "1", "-o", "back.png", "-q").exit_code == 0
    assert invoke("max", "photos/a.png", "-k", "2", "-o", "here.png", "-q").exit_code == 0
    assert (tmp_path / "back.png").read_bytes() == (tmp_path / "here.png").read_bytes()
    missing = invoke("max", f"s3://{bucket}/nothing.png", "-k", "2", "-o", "x.png")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == f"poolcli: error: s3://{bucket}/nothing.png: no such file"


def test_memory_and_file_urls_mirror_like_folders(photos, tmp_path, invoke):
    import fsspec

    (photos / "bad.png").unlink()
    assert invoke("max", "photos", "-r", "-o", "disk", "-k", "2", "-j", "1", "-q").exit_code == 0
    assert invoke("max", "photos", "-r", "-O", "memory://mirror", "-k", "2", "-j", "1", "-q").exit_code == 0
    memory = fsspec.filesystem("memory")
    for path in (tmp_path / "disk").rglob("*.*"):
        assert memory.cat_file(f"/mirror/{path.relative_to(tmp_path / 'disk').as_posix()}") == path.read_bytes()
    result = invoke("max", "memory://mirror/", "-r", "-o", (tmp_path / "back").as_uri() + "/", "-k", "1", "--json",
                    "-j", "1")
    assert result.exit_code == 0
    written = sorted(p.relative_to(tmp_path / "disk").as_posix() for p in (tmp_path / "disk").rglob("*.*"))
    assert sorted(r["input"] for r in json_lines(result.stdout)) == [f"memory://mirror/{p}" for p in written]
    assert invoke("max", "disk", "-r", "-o", "again", "-k", "1", "-j", "1", "-q").exit_code == 0
    same_tree(tmp_path / "again", tmp_path / "back")  # (k 1 re-encodes: JPEG bytes change, the same way)
    memory.rm("/mirror", recursive=True)


# --------------------------------------------------------------------------- without Dask


def test_single_files_and_version_import_no_dask_or_fsspec(tmp_path, rgb_png):
    code = ("import sys\nfrom poolcli.cli import cli\n"
            "for args in (['--version'], ['max', sys.argv[1], '-k', '2', '-q']):\n"
            "    try:\n        cli.main(args)\n    except SystemExit as stop:\n        assert stop.code == 0\n"
            "print(sorted(m for m in ('dask', 'distributed', 'fsspec', 's3fs') if m in sys.modules))")
    # a standing Dask setting does not send a single file to a cluster, nor import Dask
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DASK_SCHEDULER_ADDRESS": "tcp://127.0.0.1:1"}
    out = subprocess.run([sys.executable, "-c", code, str(rgb_png)], capture_output=True, text=True, check=True,
                         cwd=tmp_path, env=env)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "rgb.max-k2.png").exists()


def test_bad_storage_options_are_a_usage_error_without_the_text(invoke, course):
    result = invoke("max", "course.npy", "-k", "2", "--storage-options", '{"secret": "SHH-42"')
    assert result.exit_code == 2
    assert "Invalid value for '--storage-options': not valid JSON" in result.stderr
    assert "SHH-42" not in result.stderr


def test_scheduler_without_the_extra_is_a_usage_error(photos, tmp_path, invoke, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed: import fails
    result = invoke("max", "photos", "-o", "out", "-k", "2", "--scheduler", "local")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "--scheduler needs Dask" in line and 'pip install "poolcli[dask]"' in line
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- slower: in CI only

SLOW = pytest.mark.skipif(os.environ.get("CI") != "true", reason="restarts worker processes: runs when CI=true")


@SLOW
def test_a_file_that_kills_its_workers_ends_as_its_error(scheduler, photos, tmp_path):
    """A task that kills every worker it runs on: after the scheduler's allowed failures (1 in
    this cluster) it is that file's error, and the other files are pooled."""
    from poolcli import cluster
    from poolcli.params import PoolParams
    from poolcli.pipeline import Options

    def deadly(job, params, options, skip_existing):
        if Path(job.source).name == "a.png":
            os.kill(os.getpid(), signal.SIGKILL)
        return cluster.pool_one(job, params, options, skip_existing)

    params = PoolParams("max", (2, 2))
    jobs = batch.plan([str(photos)], str(tmp_path / "out"), params, Options())
    results = []
    cluster.run_on_cluster(jobs, params, Options(), scheduler[0], None, 1, results.append, task=deadly)
    by_name = {Path(r.input).name: r for r in results}
    assert sorted(by_name) == ["a b.png", "a.png", "bad.png", "z.PNG"]
    assert by_name["a.png"].status == "error"
    assert by_name["a.png"].error.startswith("it killed the Dask workers that pooled it")
    assert by_name["bad.png"].error == "not an image file Pillow can read"
    assert {by_name[n].status for n in ("a b.png", "z.PNG")} == {"ok"}
    scheduler[1].wait_for_workers(2)


@SLOW
def test_ctrl_c_of_a_local_cluster_leaves_nothing_partial(tmp_path, rng):
    source = tmp_path / "many"
    source.mkdir()
    for i in range(24):
        Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(source / f"i{i:02d}.png",
                                                                                   compress_level=1)
    process = subprocess.Popen(
        [sys.executable, "-m", "poolcli", "max", "many", "-o", "out", "-k", "2", "--json", "--scheduler", "local",
         "-j", "2"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert b'"status": "ok"' in process.stdout.readline()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert b"Traceback" not in stderr
    written = sorted((tmp_path / "out").iterdir())
    assert all(not p.name.startswith(".") for p in written)  # the stopped workers' temporary files are gone
    for path in written:
        with Image.open(path) as img:
            img.load()
            assert img.size == (150, 150)


# --------------------------------------------------------------------------- one giant Zarr image


@pytest.mark.parametrize("options", [["-k", "2"], ["-k", "3", "-s", "2", "-p", "1", "--ceil-mode"]])
def test_a_zarr_image_pooled_on_the_cluster_equals_the_local_result(scheduler, tmp_path, rng, invoke, options):
    """Each output chunk row is a task that reads its input rows (and halo) and writes its chunks."""
    zarr = pytest.importorskip("zarr")
    pixels = rng.integers(0, 65535, (3, 600, 530), dtype=np.uint16)
    source = zarr.open_array(str(tmp_path / "big.zarr"), mode="w", shape=pixels.shape, dtype=pixels.dtype,
                             chunks=(1, 128, 128))
    source[:] = pixels
    here = invoke("max", "big.zarr", *options, "-o", "here.zarr", "-q")
    there = invoke("max", "big.zarr", *options, "-o", "there.zarr", "-q", "--scheduler", scheduler[0])
    assert here.exit_code == there.exit_code == 0, there.stderr
    expected = zarr.open_array(str(tmp_path / "here.zarr"), mode="r")[:]
    assert expected.shape[1] > 256  # several chunk rows, so several tasks
    assert np.array_equal(zarr.open_array(str(tmp_path / "there.zarr"), mode="r")[:], expected)
    assert "pool_strip" in scheduler[2].scheduler.task_prefixes  # the strips ran on the workers
