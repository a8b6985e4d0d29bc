"""One clean line, always: file names with markup, newlines, undecodable bytes, deep trees."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from poolcli import batch
from tests.conftest import json_lines


def small_png(path: Path) -> None:
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(path)


def test_markup_in_names_and_reasons_is_printed_literally(invoke, tmp_path):
    folder = tmp_path / "shots["
    folder.mkdir()
    (folder / "].png").write_bytes(b"not an image")  # "shots[/].png": Rich's closing tag
    header = b"{'descr': '[/]', 'fortran_order': False, 'shape': (2, 2), }"
    (folder / "[bold]m.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header)
    small_png(folder / "[red]ok.png")
    result = invoke("max", "shots[", "-o", "out", "-k", "2", "-j", "1")
    assert result.exit_code == 1
    assert "poolcli: error: shots[/].png: not an image file Pillow can read" in result.stderr
    assert "poolcli: error: shots[/[bold]m.npy: " in result.stderr and "[/]" in result.stderr.split("m.npy: ")[1]
    # each failure is listed once (no table of failed files), and the report prints names literally
    assert result.stderr.count("shots[/].png") == 1 and result.stderr.count("shots[/[bold]m.npy") == 1
    assert "shots[/[red]ok.png 4x4 " in result.stderr
    assert (tmp_path / "out" / "[red]ok.png").exists()


def test_a_newline_in_a_name_stays_on_one_line(invoke, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a\nb.png").write_bytes(b"not an image")
    (folder / "c\x1b[31m.png").write_bytes(b"not an image")  # a terminal escape sequence
    result = invoke("max", "photos", "-o", "out", "-k", "2", "-q", "-j", "1")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "poolcli: error: photos/a\\nb.png: not an image file Pillow can read",
        "poolcli: error: photos/c\\x1b[31m.png: not an image file Pillow can read",
    ]
    json_run = invoke("max", "photos", "-o", "out", "-k", "2", "--json", "-j", "1")
    assert [r["input"] for r in json_lines(json_run.stdout)] == ["photos/a\nb.png", "photos/c\x1b[31m.png"]


@pytest.mark.skipif(sys.platform != "linux", reason="file names are bytes on Linux")
@pytest.mark.parametrize("mode", ["--json", "report"])
def test_a_name_that_is_not_utf8_under_strict_utf8(tmp_path, mode):
    folder = tmp_path / "photos"
    folder.mkdir()
    bad_name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not UTF-8
    (folder / bad_name).write_bytes(b"not an image")
    small_png(folder / os.fsdecode(b"good\xff.png"))
    args = ["--json"] if mode == "--json" else []
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"}
    process = subprocess.run([sys.executable, "-m", "poolcli", "max", "photos", "-o", "out", "-k", "2", *args],
                             cwd=tmp_path, env=env, capture_output=True)
    assert process.returncode == 1
    stderr = process.stderr.decode("utf-8")  # strict: it is valid UTF-8
    assert "Traceback" not in stderr
    assert "poolcli: error: photos/caf\\xe9.png: not an image file Pillow can read" in stderr
    assert os.path.exists(os.path.join(tmp_path, "out", os.fsdecode(b"good\xff.png")))
    if mode == "--json":
        records = [json.loads(line) for line in process.stdout.decode("utf-8").splitlines()]
        assert sorted(os.fsencode(r["input"]) for r in records) == [b"photos/caf\xe9.png", b"photos/good\xff.png"]
        assert {os.fsencode(r["output"]) for r in records if r["output"]} == {b"out/good\xff.png"}


def remove_tree(top: Path) -> None:
    """shutil.rmtree (and so pytest's own clean-up of old temporary folders) recurses a frame per
    level: a tree this deep must be removed here, without recursion."""
    folders, stack = [], [str(top)]
    while stack:
        folder = stack.pop()
        folders.append(folder)
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    os.unlink(entry.path)
    for folder in reversed(folders):
        os.rmdir(folder)


def test_a_thousand_levels_deep(invoke, tmp_path):
    depth = 1000
    relative = "deep/" + "d/" * (depth - 1)
    try:
        folder = tmp_path
        for part in relative.strip("/").split("/"):  # os.makedirs itself recurses, level by level
            folder = folder / part
            folder.mkdir()
        small_png(tmp_path / relative / "a.png")
        assert list(batch.walk(str(tmp_path / "deep"), recursive=True)) == [str(tmp_path / relative / "a.png")]
        result = invoke("max", "deep", "-r", "-o", "out", "-k", "2", "--json", "-j", "1")
        assert result.exit_code == 0, result.stderr
        (record,) = json_lines(result.stdout)
        assert record["input"] == relative + "a.png"
        assert Image.open(tmp_path / "out" / relative[len("deep/"):] / "a.png").size == (2, 2)
    finally:
        for top in (tmp_path / "deep", tmp_path / "out"):
            if top.exists():
                remove_tree(top)


def test_batch_does_not_import_rich():
    """The progress bar lives in report, the only module that uses Rich (issue 12 point 2); batch
    asks report for it.  Lazy imports inside functions count too."""
    tree = ast.parse(Path(batch.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not [name for name in imported if name.split(".")[0] == "rich"]
