"""Paper cuts a newcomer meets (issue 20): a folder run without -r says what it left alone, floor
mode says which rows or columns it drops, every path completes as a file name, and Python 3.10
says why it cannot read a Zarr v3 store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click
import numpy as np
import pytest
from PIL import Image

from poolcli import zarr_io
from poolcli.cli import cli
from tests.oracle import max_pool2d_ref

UNWALKED = "poolcli: 3 subfolders not walked; add -r"


@pytest.fixture
def tree(tmp_path, rng):
    """photos/ with one image of its own and three subfolders holding more (plus a hidden folder
    and a Zarr store, which are never counted: one is skipped, the other is an input)."""
    photos = tmp_path / "photos"
    for sub in ("a", "b", "c/deeper", ".hidden"):
        (photos / sub).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)).save(photos / sub / "x.png")
    Image.fromarray(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)).save(photos / "top.png")
    return photos


def test_a_folder_run_without_r_says_once_how_many_subfolders_it_left(tree, invoke):
    result = invoke("max", "photos", "-o", "small/", "-k", "2")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines.count(UNWALKED) == 1 and lines[-1] == UNWALKED  # last, after the summary
    assert sorted(os.listdir(tree.parent / "small")) == ["top.png"]


def test_the_hint_counts_every_folder_input_and_is_singular_for_one(tree, invoke):
    (tree.parent / "more").mkdir()
    (tree.parent / "more" / "sub").mkdir()
    result = invoke("max", "photos", "more", "-o", "small/", "-k", "2", "-j", "1")
    assert result.stderr.splitlines()[-1] == "poolcli: 4 subfolders not walked; add -r"
    result = invoke("max", "more", "-o", "small2/", "-k", "2")
    assert result.stderr.splitlines()[-1] == "poolcli: 1 subfolder not walked; add -r"


def test_no_hint_with_r_with_q_or_without_subfolders(tree, invoke):
    walked = invoke("max", "photos", "-r", "-o", "all/", "-k", "2")
    assert walked.exit_code == 0 and "not walked" not in walked.stderr
    assert sorted(p.name for p in (tree.parent / "all").rglob("*.png")) == ["top.png", "x.png", "x.png", "x.png"]
    quiet = invoke("max", "photos", "-o", "quiet/", "-k", "2", "-q")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    flat = invoke("max", "photos/a", "-o", "flat/", "-k", "2")
    assert flat.exit_code == 0 and "not walked" not in flat.stderr
    one_file = invoke("max", "photos/top.png", "-k", "2")
    assert one_file.exit_code == 0 and "not walked" not in one_file.stderr


def test_the_hint_on_a_url_folder(tree, invoke):
    result = invoke("max", f"file://{tree}/", "-o", "small/", "-k", "2")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[-1] == UNWALKED


def image(tmp_path, rng, width: int, height: int):
    path = tmp_path / f"w{width}h{height}.png"
    pixels = rng.integers(0, 256, (height, width), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path, pixels


def test_floor_mode_says_it_drops_the_last_column(tmp_path, rng, invoke):
    path, pixels = image(tmp_path, rng, 451, 300)
    result = invoke("max", path.name, "-k", "2")
    assert result.exit_code == 0
    assert result.stderr.splitlines()[1:] == ["note: floor mode drops the last column (451 wide): --ceil-mode keeps it"]
    assert Image.open(tmp_path / "w451h300.max-k2.png").size == (225, 150)
    kept = invoke("max", path.name, "-k", "2", "--ceil-mode")
    assert kept.exit_code == 0 and len(kept.stderr.splitlines()) == 1  # no note: nothing is dropped
    expected, _ = max_pool2d_ref(pixels[None, None], (2, 2), (2, 2), (0, 0), (1, 1), True)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "w451h300.max-k2-ceil.png")), expected[0, 0])


def test_floor_mode_names_rows_and_columns_and_counts_them(tmp_path, rng, invoke):
    path, _ = image(tmp_path, rng, 455, 303)
    result = invoke("avg", path.name, "-k", "4", "-q")
    assert result.stderr == ""
    result = invoke("avg", path.name, "-k", "4", "-o", "out.png")
    assert result.stderr.splitlines()[1:] == [
        "note: floor mode drops the last 3 rows (303 high) and the last 3 columns (455 wide): --ceil-mode keeps them"]
    even, _ = image(tmp_path, rng, 450, 300)
    assert len(invoke("max", even.name, "-k", "2").stderr.splitlines()) == 1
    # Padding that already reaches the last column: nothing dropped, no note.
    odd, _ = image(tmp_path, rng, 5, 5)
    assert len(invoke("max", odd.name, "-k", "3", "-s", "2", "-p", "1", "-o", "p.png").stderr.splitlines()) == 1


def test_arrays_follow_torch_without_a_note(tmp_path, invoke):
    np.save(tmp_path / "m.npy", np.zeros((1, 3, 5), np.float32))
    result = invoke("max", "m.npy", "-k", "2")
    assert result.exit_code == 0 and len(result.stderr.splitlines()) == 1


def commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


# A parameter takes a path when its metavar says so.
PATH_WORDS = ("FILE", "PATH", "DIR", "INPUT", "MATRIX")


def path_parameters():
    for words, command in commands(cli):
        for param in command.params:
            metavar = param.metavar or ""
            if any(word in metavar for word in PATH_WORDS):
                yield words, command, param


def test_there_are_path_parameters_in_every_command():
    found = {(" ".join(words), param.name) for words, _, param in path_parameters()}
    assert {("pyramid max", "input_path"), ("pyramid avg", "output"), ("explain max", "matrix"),
            ("explain avg", "png_path"), ("max", "inputs"), ("max", "indices_path"), ("max", "output_dir")} <= found


@pytest.mark.parametrize(("words", "command", "param"), list(path_parameters()),
                         ids=[f"{' '.join(w)}:{p.name}" for w, _, p in path_parameters()])
def test_every_path_completes_file_names(words, command, param):
    with click.Context(command, info_name=words[-1]) as ctx:
        items = param.shell_complete(ctx, "sam")
    assert [(item.type, item.value) for item in items] == [("file", "sam")]


@pytest.mark.parametrize("line", ["poolcli pyramid max ", "poolcli pyramid avg in.tif -o ",
                                  "poolcli explain max ", "poolcli explain avg m.npy --png "])
def test_bash_completion_offers_files(line):
    env = dict(os.environ, _POOLCLI_COMPLETE="bash_complete", COMP_WORDS=line, COMP_CWORD=str(len(line.split())))
    run = subprocess.run([sys.executable, "-m", "poolcli"], env=env, capture_output=True, text=True, check=False)
    assert run.stdout.splitlines() == ["file,"], run.stderr


def v3_store(tmp_path):
    """A Zarr v3 array written by hand (its zarr.json and one chunk), as zarr 3 writes it."""
    store = tmp_path / "v3.zarr"
    store.mkdir()
    (store / "zarr.json").write_text(json.dumps({
        "zarr_format": 3, "node_type": "array", "shape": [4, 4], "data_type": "uint8",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4, 4]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0, "codecs": [{"name": "bytes"}], "attributes": {}}))
    (store / "c" / "0").mkdir(parents=True)
    (store / "c" / "0" / "0").write_bytes(bytes(range(16)))
    return store


def test_a_zarr_v3_input_on_zarr_2_says_it_needs_python_3_11(tmp_path, invoke, monkeypatch):
    v3_store(tmp_path)
    if zarr_io.zarr_major() >= 3:  # Python 3.11 and later: what Python 3.10's zarr 2 meets
        monkeypatch.setattr(zarr_io, "zarr_major", lambda: 2)
    result = invoke("max", "v3.zarr", "-k", "2")
    assert result.exit_code == 1
    assert result.stderr == ("poolcli: error: v3.zarr: Zarr v3 needs Python 3.11 or later (zarr 3); zarr 2, on "
                             "this Python, reads Zarr v2 only\n")
    assert not (tmp_path / "v3.max-k2.zarr").exists()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="zarr 3 needs Python 3.11")
def test_the_same_store_is_read_with_zarr_3(tmp_path, invoke):
    v3_store(tmp_path)
    result = invoke("max", "v3.zarr", "-k", "2", "-o", "out.npy")
    assert result.exit_code == 0, result.stderr
    assert np.load(tmp_path / "out.npy").tolist() == [[5, 7], [13, 15]]
