"""What one strip of a giant image holds, wherever it runs (here, or as a Dask task on a worker):
no band of input rows outlives its task, even with Python's cyclic collector off (Dask workers
only rarely run a full collection), and a TIFF's segments are read a bounded span at a time,
however wide the image.  Counts and sizes, never timings."""

from __future__ import annotations

import gc
import pickle
from contextlib import contextmanager

import numpy as np
import pytest

from poolcli import chunked, cluster, giant, strips, tiff_io
from poolcli.params import PoolParams
from tests.oracle import max_pool2d_ref

tifffile = pytest.importorskip("tifffile")
zarr = pytest.importorskip("zarr")


@contextmanager
def no_cyclic_collection():
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def bands_alive() -> int:
    return sum(type(thing) is chunked.Band for thing in gc.get_objects())  # type(): no proxy object is asked


def oracle(pixels: np.ndarray) -> np.ndarray:
    """2x2 max of (C, H, W) uint8 pixels, by the slow reference."""
    values, _ = max_pool2d_ref(pixels[None].astype(np.float64), (2, 2), (2, 2), (0, 0), (1, 1), False)
    return values[0].astype(np.uint8)


def as_worker(task, ranges) -> tuple[list, list]:
    """The strips as a Dask worker runs them: each on a copy of its own, through run_strip; the
    results, and the copies (a worker keeps them until the client has the results)."""
    copies = [pickle.loads(pickle.dumps(task)) for _ in ranges]
    return [cluster.run_strip(copy, o0, o1) for copy, (o0, o1) in zip(copies, ranges, strict=True)], copies


def test_zarr_strip_tasks_leave_no_band_behind(tmp_path, rng):
    pixels = rng.integers(0, 256, (3, 512, 300), dtype=np.uint8)
    source = zarr.open_array(str(tmp_path / "in.zarr"), mode="w", shape=pixels.shape, dtype=pixels.dtype,
                             chunks=(1, 128, 128))
    source[:] = pixels
    params = PoolParams("max", (2, 2))
    out = giant.zarr_output(str(tmp_path / "out.zarr"), None)
    with out as target:
        giant.create_array(None, None, (3, 256, 150), pixels.dtype, (3, 64, 64), 2, path=target.store())
        task = giant.StripTask(str(tmp_path / "in.zarr"), None, (), strips.Rule(params), target, "", ("c", "y", "x"))
        with no_cyclic_collection():
            done, _kept = as_worker(task, strips.plan_strips(256, 64))
            assert bands_alive() == 0
    assert done == [64] * 4
    assert np.array_equal(zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[:], oracle(pixels))


def test_tiff_tasks_keep_one_input_a_thread_until_forgotten(tmp_path, rng, monkeypatch):
    """A worker keeps each finished task's copy until the client takes the result: the copies of a
    TIFF strip task hold nothing; the thread keeps one opened input (one band) for the task's next
    strips, however many it runs, and ``forget`` (run on every worker at the end) closes it."""
    pixels = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", pixels, tile=(32, 32), photometric="rgb")
    info = giant.open_tiff(str(tmp_path / "in.tif"))
    rule = giant.pixel_rule(info, PoolParams("max", (2, 2)), True, False)
    info.close()
    task = giant.PassTask(str(tmp_path / "in.tif"), None, rule, None, 3)
    opens = []
    open_reader = giant.open_reader
    monkeypatch.setattr(giant, "open_reader", lambda *args: opens.append(args) or open_reader(*args))
    with no_cyclic_collection():
        pieces, _kept = as_worker(task, strips.plan_strips(150, 32))
        assert len(pieces) == 5 and len(opens) == 1  # opened once for its five strips
        assert bands_alive() == 1
        other = giant.PassTask(str(tmp_path / "in.tif"), None, rule, None, 3)
        other(0, 32)  # another task's strip in this thread: the first task's input is closed
        assert bands_alive() == 1
        task.forget()
        assert bands_alive() == 1
        other.forget()
        assert bands_alive() == 0
    assert np.array_equal(np.concatenate([rows for _, _, rows in pieces], axis=1),
                          oracle(pixels.transpose(2, 0, 1)))


@pytest.mark.parametrize("width", [640, 2560])
def test_a_tiff_is_read_a_bounded_span_at_a_time_whatever_its_width(tmp_path, rng, monkeypatch, width):
    """One strip of a tiled TIFF four times as wide reads the same bytes per read, in more reads."""
    monkeypatch.setattr(tiff_io, "READ_BYTES", 100_000)
    monkeypatch.setattr(tiff_io, "USE_RAW_READS", False)  # the decoder's reads (a URL's, a compressed file's)
    pixels = rng.integers(0, 256, (64, width, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", pixels, tile=(32, 32), photometric="rgb")  # 3 KiB tiles, contiguous
    info = giant.open_tiff(str(tmp_path / "in.tif"))
    reader = info.open()
    reads: list[int] = []
    read_span = reader.read_span
    reader.read_span = lambda start, stop: reads.append(stop - start) or read_span(start, stop)
    try:
        rows = reader.read(0, 64)
    finally:
        info.close()
    assert np.array_equal(rows, pixels.transpose(2, 0, 1))
    tile = 32 * 32 * 3
    assert max(reads) == 100_000 // tile * tile  # whole tiles, as many as the limit holds
    assert sum(reads) == 64 * width * 3  # each tile read once
    assert len(reads) == -(-2 * (width // 32) // (100_000 // tile))


class Recording:
    """A strip runner as the Dask one is seen from the client (tasks run as workers run them);
    it records the output row ranges it was given."""

    def __init__(self) -> None:
        self.ranges: list[tuple[int, int]] = []

    def map(self, task, ranges):
        self.ranges += ranges
        yield from as_worker(task, ranges)[0]


@pytest.mark.parametrize("width", [64, 256])
def test_cluster_tasks_read_whole_input_chunk_rows(tmp_path, rng, width):
    """A task of 256 output rows would read half of a 1024-row input chunk row and decode all of
    it, the other half's task likewise on another worker: a task is 512 output rows, whatever the
    width (while the memory limit allows it)."""
    from poolcli.pipeline import Options
    from poolcli.results import Result

    pixels = rng.integers(0, 256, (2, 2048, width), dtype=np.uint8)
    source = zarr.open_array(str(tmp_path / "in.zarr"), mode="w", shape=pixels.shape, dtype=pixels.dtype,
                             chunks=(1, 1024, 64))
    source[:] = pixels
    runner = Recording()
    result = Result(input="in.zarr")
    giant.run_zarr(str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), PoolParams("max", (2, 2)), Options(),
                   result, runner)
    assert runner.ranges == [(0, 512), (512, 1024)]
    assert [strips.input_rows(PoolParams("max", (2, 2)), 2048, *r) for r in runner.ranges] == [(0, 1024), (1024, 2048)]
    assert np.array_equal(zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[:], oracle(pixels))


def test_a_tiff_url_is_read_by_ranges_with_the_pixels_of_the_file(tmp_path, rng):
    fsspec = pytest.importorskip("fsspec")
    pixels = rng.integers(0, 256, (300, 520, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", pixels, tile=(64, 64), photometric="rgb", compression="zlib")
    fsspec.filesystem("memory").pipe_file("/strip-memory/in.tif", (tmp_path / "in.tif").read_bytes())
    try:
        info = giant.open_tiff("memory://strip-memory/in.tif")
        assert info.read_span is not None  # ranged reads, not the read-ahead file
        rows = info.open().read(70, 300)
        info.close()
    finally:
        fsspec.filesystem("memory").rm("/strip-memory", recursive=True)
    assert np.array_equal(rows, pixels[70:].transpose(2, 0, 1))
