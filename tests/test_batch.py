"""Folders: walking, mirrored outputs, workers, JSON lines, skipping, collisions, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from poolcli import batch
from poolcli.params import PoolParams
from poolcli.pipeline import Options
from tests.conftest import files_in, json_lines

MAX2 = PoolParams("max", (2, 2))


@pytest.fixture
def tree(tmp_path, rng) -> Path:
    """photos/ with nested folders, unicode and spaces, a bad file, a hidden file, a text file,
    an array, and a symlink loop."""
    root = tmp_path / "photos"
    (root / "sub dir" / "ünï cödé").mkdir(parents=True)
    (root / ".hidden").mkdir()

    def image(path: Path, size=(8, 12)):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)

    image(root / "a.PNG")
    image(root / "sub dir" / "b c.jpg")
    image(root / "sub dir" / "ünï cödé" / "d.png")
    image(root / ".hidden" / "h.png")
    image(root / ".dotfile.png")
    (root / "bad.png").write_bytes(b"this is not a png")
    (root / "notes.txt").write_text("ignored")
    np.save(root / "sub dir" / "m.npy", np.arange(16.0).reshape(4, 4))
    os.symlink("..", root / "sub dir" / "loop")
    return root


def test_walk_is_sorted_skips_hidden_and_survives_symlink_loops(tree):
    found = list(batch.walk(str(tree), recursive=True))
    assert [Path(p).relative_to(tree).as_posix() for p in found] == [
        "a.PNG", "bad.png", "sub dir/b c.jpg", "sub dir/m.npy", "sub dir/ünï cödé/d.png"]
    assert [Path(p).name for p in batch.walk(str(tree), recursive=False)] == ["a.PNG", "bad.png"]


def test_folder_mirrors_into_output(invoke, tree, tmp_path):
    result = invoke("max", "photos", "-r", "-o", "small", "-k", "2", "--json", "-j", "2")
    assert result.exit_code == 1  # bad.png failed, the others did not stop
    assert files_in(tmp_path / "small") == [
        "a.PNG", "sub dir", "sub dir/b c.jpg", "sub dir/m.npy", "sub dir/ünï cödé", "sub dir/ünï cödé/d.png"]
    records = {r["input"]: r for r in json_lines(result.stdout)}
    assert set(records) == {"photos/a.PNG", "photos/bad.png", "photos/sub dir/b c.jpg", "photos/sub dir/m.npy",
                            "photos/sub dir/ünï cödé/d.png"}
    assert records["photos/bad.png"]["status"] == "error"
    assert records["photos/bad.png"]["error"] == "not an image file Pillow can read"
    assert records["photos/a.PNG"]["output"] == "small/a.PNG"
    assert records["photos/a.PNG"]["output_shape"] == [3, 4, 6]
    assert np.load(tmp_path / "small" / "sub dir" / "m.npy").tolist() == [[5, 7], [13, 15]]
    assert Image.open(tmp_path / "small" / "sub dir" / "ünï cödé" / "d.png").size == (6, 4)


def test_json_input_is_the_path_as_typed(invoke, tree):
    result = invoke("max", "./photos", "-o", "out", "-k", "2", "--json", "-j", "1")
    assert sorted(r["input"] for r in json_lines(result.stdout)) == ["./photos/a.PNG", "./photos/bad.png"]


def test_all_good_exits_0_and_summary_is_printed(invoke, tree, tmp_path):
    (tree / "bad.png").unlink()
    result = invoke("avg", "photos", "-r", "-o", "small", "-k", "2", "--format", "png")
    assert result.exit_code == 0
    assert "poolcli summary" in result.stderr and "images/s" in result.stderr
    assert files_in(tmp_path / "small") == [
        "a.png", "sub dir", "sub dir/b c.png", "sub dir/m.npy", "sub dir/ünï cödé", "sub dir/ünï cödé/d.png"]


def test_failed_files_are_listed_with_reasons(invoke, tree):
    result = invoke("max", "photos", "-o", "out", "-k", "2", "-j", "1")
    assert result.exit_code == 1
    assert result.stderr.count("photos/bad.png") == 1  # listed once, not again in a table
    assert "poolcli: error: photos/bad.png: not an image file Pillow can read" in result.stderr
    assert "poolcli summary: 1 ok, 1 failed, 0 skipped in " in result.stderr


def test_folder_needs_an_output_folder(invoke, tree):
    result = invoke("max", "photos", "-k", "2")
    assert result.exit_code == 2 and "-o/--output DIR is required when an input is a folder" in result.stderr


def test_output_onto_inputs_is_refused_before_writing(invoke, tree, tmp_path):
    before = files_in(tmp_path)
    result = invoke("max", "photos", "-o", "photos", "-k", "2")
    assert result.exit_code == 2 and "refusing to overwrite the input" in result.stderr
    assert files_in(tmp_path) == before


def test_two_inputs_landing_on_one_output_are_refused(invoke, tree, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.PNG").write_bytes((tree / "a.PNG").read_bytes())
    result = invoke("max", "photos/a.PNG", "other/a.PNG", "-o", "out", "-k", "2")
    assert result.exit_code == 2
    assert "photos/a.PNG and other/a.PNG would both be written to out/a.PNG" in result.stderr
    assert not (tmp_path / "out").exists()


def test_skip_existing_resumes(invoke, tree, tmp_path):
    (tree / "bad.png").unlink()
    assert invoke("max", "photos", "-o", "out", "-k", "2", "-q").exit_code == 0
    first = (tmp_path / "out" / "a.PNG").stat().st_mtime_ns
    result = invoke("max", "photos", "-o", "out", "-k", "2", "--skip-existing", "--json")
    assert result.exit_code == 0
    (record,) = json_lines(result.stdout)
    assert record["status"] == "skipped" and record["error"] == "output exists (--skip-existing)"
    assert (tmp_path / "out" / "a.PNG").stat().st_mtime_ns == first


def test_one_and_two_workers_give_identical_files(invoke, tree, tmp_path):
    (tree / "bad.png").unlink()
    assert invoke("max", "photos", "-r", "-o", "one", "-k", "2", "-j", "1", "-q").exit_code == 0
    assert invoke("max", "photos", "-r", "-o", "two", "-k", "2", "-j", "2", "-q").exit_code == 0
    for path in (tmp_path / "one").rglob("*.*"):
        twin = tmp_path / "two" / path.relative_to(tmp_path / "one")
        assert path.read_bytes() == twin.read_bytes()


def test_plan_mirrors_and_renames_by_format(tree):
    jobs = batch.plan([str(tree)], "/out", MAX2, Options(file_format="TIFF"), recursive=True)
    assert [j.output for j in jobs] == ["/out/a.tif", "/out/bad.tif", "/out/sub dir/b c.tif",
                                        "/out/sub dir/m.npy", "/out/sub dir/ünï cödé/d.tif"]


def test_interrupt_leaves_only_whole_images(tmp_path, rng):
    source = tmp_path / "many"
    source.mkdir()
    for i in range(24):
        pixels = rng.integers(0, 256, (600, 600, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(source / f"img{i:02d}.png", compress_level=1)
    process = subprocess.Popen(
        [sys.executable, "-m", "poolcli", "max", "many", "-o", "out", "-k", "2", "-j", "2", "--json"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # also from a background job
    first = process.stdout.readline()  # one file is done: the run is under way
    assert b'"status": "ok"' in first
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert b"poolcli: interrupted after" in stderr
    assert b"; to resume, run the same command with --skip-existing" in stderr
    written = sorted((tmp_path / "out").iterdir())
    assert 1 <= len(written) < 24
    assert all(p.suffix == ".png" and not p.name.startswith(".") for p in written)  # no temporary files
    for path in written:
        with Image.open(path) as img:
            img.load()  # whole and valid
            assert img.size == (300, 300)


def test_output_that_is_a_link_to_an_input_is_refused(invoke, tree, tmp_path):
    os.symlink(tree / "a.PNG", tmp_path / "link.png")
    before = (tree / "a.PNG").read_bytes()
    result = invoke("max", "photos/a.PNG", "-k", "2", "-o", "link.png")
    assert result.exit_code == 2 and "refusing to overwrite the input link.png" in result.stderr
    assert (tree / "a.PNG").read_bytes() == before


def test_stdin_to_a_folder_needs_a_file_name(invoke, tree, course):
    result = invoke("max", "-", "-k", "2", "-o", "photos", input=course.read_bytes())
    assert result.exit_code == 2
    assert "-o photos is a folder: give a file name for standard input, or -o -" in result.stderr
