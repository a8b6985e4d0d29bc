"""Output paths that mean one thing, and never destroy what the user pointed at (issue 10):
devices, FIFOs and symlinks as outputs, modes kept, outputs checked against inputs and each other,
-o DIR/ and -O DIR, missing folders, streams as inputs, all-or-nothing outputs, long names,
stream limits, and errors mapped on purpose (issue 12 point 5)."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from poolcli import paths, pipeline
from tests.conftest import files_in

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")


def run_poolcli(*args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "poolcli", *args], cwd=cwd, capture_output=True, timeout=120,
                          **kwargs)


def pooled_png(source: Path, tmp_path: Path, invoke) -> bytes:
    """What ``max -k 2`` writes for ``source`` to a regular file."""
    reference = tmp_path / "reference.png"
    assert invoke("max", str(source), "-k", "2", "-o", str(reference), "-q").exit_code == 0
    data = reference.read_bytes()
    reference.unlink()
    return data


class Reader(threading.Thread):
    """Reads a FIFO to its end, as the process at the other end of a pipe would."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path, self.data = path, b""

    def run(self) -> None:
        with open(self.path, "rb") as handle:
            self.data = handle.read()


class Writer(threading.Thread):
    def __init__(self, path: Path, data: bytes):
        super().__init__(daemon=True)
        self.path, self.data = path, data

    def run(self) -> None:
        with open(self.path, "wb") as handle:
            handle.write(self.data)


# --- things the user pointed at are written through or kept -------------------------------------


def _pool_onto_a_fifo(invoke, tmp_path: Path, *extra: str):
    """``max rgb.png -k 2 -o pipe.png``, pipe.png a FIFO read to its end by another thread."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    reader = Reader(fifo)
    reader.start()
    result = invoke("max", "rgb.png", "-k", "2", "-o", "pipe.png", "-q", *extra)
    reader.join(timeout=60)
    return result, reader, fifo


@needs_fifo
def test_output_onto_a_fifo_writes_through_it(invoke, tmp_path, rgb_png):
    expected = pooled_png(rgb_png, tmp_path, invoke)
    result, reader, fifo = _pool_onto_a_fifo(invoke, tmp_path)
    assert result.exit_code == 0, result.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still the FIFO, not a regular file
    assert reader.data == expected


def test_output_onto_a_character_device_writes_through_it(invoke, tmp_path, rgb_png):
    null = tmp_path / "null"
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers
    except (PermissionError, OSError) as error:
        pytest.skip(f"mknod is not permitted here ({error})")
    result = invoke("max", "rgb.png", "-k", "2", "-o", "null", "-q")
    assert result.exit_code == 0, result.stderr
    assert stat.S_ISCHR(os.lstat(null).st_mode)
    assert os.lstat(null).st_rdev == os.makedev(1, 3)
    assert files_in(tmp_path) == ["null", "rgb.png"]


def test_output_onto_a_socket_writes_through_it(invoke, tmp_path, rgb_png):
    import socket

    expected = pooled_png(rgb_png, tmp_path, invoke)
    address = tmp_path / "sock.png"
    if len(os.fsencode(address)) > 100:
        pytest.skip("the temporary folder's path is too long for a UNIX socket")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(address))
    server.listen(1)
    received: list[bytes] = []

    def serve() -> None:
        connection, _ = server.accept()
        with connection, connection.makefile("rb") as stream:
            received.append(stream.read())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        result = invoke("max", "rgb.png", "-k", "2", "-o", "sock.png", "-q")
        thread.join(timeout=60)
    finally:
        server.close()
    assert result.exit_code == 0, result.stderr
    assert stat.S_ISSOCK(os.lstat(address).st_mode)
    assert received == [expected]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can give files away")
def test_a_replaced_file_keeps_its_owner(invoke, tmp_path, rgb_png):
    out = tmp_path / "out.png"
    out.write_bytes(b"old")
    os.chown(out, 4321, 4322)
    assert invoke("max", "rgb.png", "-k", "2", "-o", "out.png", "-q").exit_code == 0
    assert (os.stat(out).st_uid, os.stat(out).st_gid) == (4321, 4322)


def test_dev_stdout_is_standard_output(tmp_path, rgb_png):
    plain = run_poolcli("max", "rgb.png", "-k", "2", "-o", "-", "-q", cwd=tmp_path)
    through = run_poolcli("max", "rgb.png", "-k", "2", "-o", "/dev/stdout", "-q", cwd=tmp_path)
    assert plain.returncode == through.returncode == 0, through.stderr
    assert through.stdout == plain.stdout and plain.stdout.startswith(b"\x89PNG")


def test_a_symlink_output_keeps_the_link_and_replaces_its_target(invoke, tmp_path, rgb_png):
    expected = pooled_png(rgb_png, tmp_path, invoke)
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "target.png"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    os.symlink("real/target.png", tmp_path / "link.png")
    result = invoke("max", "rgb.png", "-k", "2", "-o", "link.png", "-q")
    assert result.exit_code == 0, result.stderr
    assert os.path.islink(tmp_path / "link.png") and os.readlink(tmp_path / "link.png") == "real/target.png"
    assert target.read_bytes() == expected
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert files_in(tmp_path) == ["link.png", "real", "real/target.png", "rgb.png"]


@pytest.mark.parametrize("mode", [0o640, 0o600, 0o664])
def test_a_replaced_file_keeps_its_mode(invoke, tmp_path, rgb_png, mode):
    out = tmp_path / "out.png"
    out.write_bytes(b"old")
    os.chmod(out, mode)
    assert invoke("max", "rgb.png", "-k", "2", "-o", "out.png", "-q").exit_code == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == mode
    assert out.read_bytes().startswith(b"\x89PNG")


# --- every written path checked against the inputs and the other outputs ----------------------------


def test_indices_onto_the_output_is_refused(invoke, tmp_path, course):
    result = invoke("max", "course.npy", "-k", "2", "-s", "1", "-o", "out.npy", "--return-indices", "./out.npy")
    assert result.exit_code == 2
    assert "--return-indices ./out.npy and -o out.npy are the same file" in result.stderr
    assert files_in(tmp_path) == ["course.npy"]


def test_indices_linked_to_the_output_is_refused(invoke, tmp_path, course):
    (tmp_path / "out.npy").write_bytes(b"keep")
    os.symlink("out.npy", tmp_path / "idx.npy")
    result = invoke("max", "course.npy", "-k", "2", "-s", "1", "-o", "out.npy", "--return-indices", "idx.npy")
    assert result.exit_code == 2 and "--return-indices idx.npy and -o out.npy are the same file" in result.stderr
    assert (tmp_path / "out.npy").read_bytes() == b"keep"


def test_indices_onto_the_input_through_a_hard_link_is_refused(invoke, tmp_path, course):
    os.link(course, tmp_path / "hard.npy")
    before = course.read_bytes()
    result = invoke("max", "course.npy", "-k", "2", "-o", "out.npy", "--return-indices", "hard.npy")
    assert result.exit_code == 2
    assert "refusing to overwrite the input hard.npy: --return-indices hard.npy is the input course.npy" \
        in result.stderr
    assert course.read_bytes() == before and not (tmp_path / "out.npy").exists()


def test_same_file_helper(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    os.symlink("a.png", tmp_path / "link.png")
    os.link(tmp_path / "a.png", tmp_path / "hard.png")
    os.symlink("new.png", tmp_path / "dangling.png")
    assert paths.same_file(str(tmp_path / "a.png"), str(tmp_path / "link.png"))
    assert paths.same_file(str(tmp_path / "hard.png"), str(tmp_path / "a.png"))
    assert paths.same_file(str(tmp_path / "dangling.png"), str(tmp_path / "new.png"))
    assert not paths.same_file(str(tmp_path / "a.png"), str(tmp_path / "new.png"))


# --- output paths that mean one thing ---------------------------------------------------------------


def test_output_ending_in_a_slash_is_a_folder_for_one_input(invoke, tmp_path, rgb_png):
    result = invoke("max", "rgb.png", "-k", "2", "-o", "out/", "-q")
    assert result.exit_code == 0, result.stderr
    assert files_in(tmp_path / "out") == ["rgb.png"]


def test_existing_folder_output_is_a_folder_for_one_input(invoke, tmp_path, rgb_png):
    (tmp_path / "out").mkdir()
    assert invoke("max", "rgb.png", "-k", "2", "-o", "out", "-q").exit_code == 0
    assert files_in(tmp_path / "out") == ["rgb.png"]


def test_output_dir_is_created_and_always_a_folder(invoke, tmp_path, rgb_png):
    result = invoke("max", "rgb.png", "-k", "2", "-O", "new/deeper", "-q")
    assert result.exit_code == 0, result.stderr
    assert files_in(tmp_path / "new") == ["deeper", "deeper/rgb.png"]


def test_output_dir_with_an_empty_folder_input_still_creates_it(invoke, tmp_path):
    (tmp_path / "empty").mkdir()
    assert invoke("max", "empty", "-k", "2", "-O", "made", "-q").exit_code == 0
    assert (tmp_path / "made").is_dir()


def test_output_and_output_dir_together_are_a_usage_error(invoke, tmp_path, rgb_png):
    result = invoke("max", "rgb.png", "-k", "2", "-o", "a.png", "-O", "dir")
    assert result.exit_code == 2 and "give -o/--output or -O/--output-dir, not both" in result.stderr


def test_output_dir_that_is_a_file_is_a_usage_error(invoke, tmp_path, rgb_png):
    (tmp_path / "dir").write_bytes(b"x")
    result = invoke("max", "rgb.png", "-k", "2", "-O", "dir")
    assert result.exit_code == 2 and "-O dir: this is a file, not a folder" in result.stderr


def test_output_dir_with_standard_input_needs_a_file_name(invoke, tmp_path, course):
    result = invoke("max", "-", "-k", "2", "-O", "dir", input=course.read_bytes())
    assert result.exit_code == 2 and "-O dir is a folder: give a file name for standard input" in result.stderr
    assert not (tmp_path / "dir").exists()


def test_file_output_in_a_missing_folder_is_an_error_and_creates_nothing(invoke, tmp_path, rgb_png):
    result = invoke("max", "rgb.png", "-k", "2", "-o", "missing/sub/out.png")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("poolcli: error: rgb.png: cannot write missing/sub/out.png: "
                                     "the folder missing/sub does not exist")
    assert files_in(tmp_path) == ["rgb.png"]


def test_indices_in_a_missing_folder_is_an_error_and_creates_nothing(invoke, tmp_path, course):
    result = invoke("max", "course.npy", "-k", "2", "-o", "out.npy", "--return-indices", "nope/idx.npy")
    assert result.exit_code == 1 and "the folder nope does not exist" in result.stderr
    assert files_in(tmp_path) == ["course.npy"]


def test_folder_output_still_creates_mirrored_subfolders(invoke, tmp_path, rgb_png):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    rgb_png.rename(tmp_path / "in" / "sub" / "a.png")
    assert invoke("max", "in", "-r", "-k", "2", "-o", "out", "-q").exit_code == 0
    assert files_in(tmp_path / "out") == ["sub", "sub/a.png"]


@needs_fifo
def test_a_fifo_input_is_read_to_its_end(invoke, tmp_path, rgb_png):
    expected = pooled_png(rgb_png, tmp_path, invoke)
    fifo = tmp_path / "in.png"
    os.mkfifo(fifo)
    writer = Writer(fifo, rgb_png.read_bytes())
    writer.start()
    result = invoke("max", "in.png", "-k", "2", "-o", "out.png", "-q")
    writer.join(timeout=60)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out.png").read_bytes() == expected


@pytest.mark.parametrize("from_file", [True, False], ids=["redirected-file", "pipe"])
def test_dev_stdin_input_is_read_like_a_dash_and_goes_to_stdout(tmp_path, rgb_png, from_file):
    plain = run_poolcli("max", "-", "-k", "2", "-q", cwd=tmp_path, input=rgb_png.read_bytes())
    if from_file:  # /dev/stdin is then the file itself: still no output beside it in /dev
        with open(rgb_png, "rb") as stdin:
            through = run_poolcli("max", "/dev/stdin", "-k", "2", "-q", cwd=tmp_path, stdin=stdin)
    else:
        through = run_poolcli("max", "/dev/stdin", "-k", "2", "-q", cwd=tmp_path, input=rgb_png.read_bytes())
    assert through.returncode == 0, through.stderr
    assert through.stdout == plain.stdout and through.stdout.startswith(b"\x89PNG")
    assert files_in(tmp_path) == ["rgb.png"]


def test_process_substitution_input(tmp_path, rgb_png):
    if not os.path.exists("/bin/bash"):
        pytest.skip("needs bash")
    script = f'"{sys.executable}" -m poolcli max <(cat rgb.png) -k 2 -o out.png -q'
    done = subprocess.run(["/bin/bash", "-c", script], cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "out.png") as img:
        assert img.size == (30, 20)


# --- an input's outputs appear together or not at all -----------------------------------------------


def test_a_failed_indices_write_leaves_no_output(invoke, tmp_path, course):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    os.symlink("/dev/full", tmp_path / "idx.npy")  # every write there fails with ENOSPC: a full disk
    result = invoke("max", "course.npy", "-k", "2", "-s", "1", "-o", "out.npy", "--return-indices", "idx.npy")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("poolcli: error: course.npy: cannot write idx.npy: "
                                     "No space left on device")
    assert files_in(tmp_path) == ["course.npy", "idx.npy"]  # no output, no .part
    assert os.readlink(tmp_path / "idx.npy") == "/dev/full"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_indices_in_a_read_only_folder_leave_no_output(invoke, tmp_path, course):
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o555)
    try:
        result = invoke("max", "course.npy", "-k", "2", "-s", "1", "-o", "out.npy",
                        "--return-indices", "locked/idx.npy")
    finally:
        os.chmod(locked, 0o755)
    assert result.exit_code == 1
    assert "cannot write locked/idx.npy: Permission denied" in result.stderr and ".part" not in result.stderr
    assert files_in(tmp_path) == ["course.npy", "locked"]


def test_write_all_removes_every_temporary_on_failure(tmp_path):
    def broken(handle):
        handle.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(paths.OutputError, match=r"^cannot write .*b\.bin: No space left on device$"):
        paths.write_all([(str(tmp_path / "a.bin"), lambda h: h.write(b"whole")), (str(tmp_path / "b.bin"), broken)])
    assert files_in(tmp_path) == []


# --- temporary names --------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [241, 247, 255])
def test_long_output_names_work(invoke, tmp_path, course, length):
    name = "n" * (length - len(".npy")) + ".npy"
    result = invoke("max", "course.npy", "-k", "2", "-s", "1", "-o", name, "-q")
    assert result.exit_code == 0, result.stderr
    assert files_in(tmp_path) == sorted(["course.npy", name])


def test_temporary_names_are_recognisable(tmp_path):
    short, long = "a.png", "x" * 250 + ".png"
    assert paths.temp_prefix(short) == ".a.png."
    assert paths.temp_prefix(long).startswith(".poolcli-") and len(paths.temp_prefix(long)) == 26
    stale = [tmp_path / ".a.png.abcd1234.part", tmp_path / f"{paths.temp_prefix(long)}wxyz5678.part"]
    for path in stale:
        path.write_bytes(b"")
    (tmp_path / ".a.png.notours.part").write_bytes(b"")
    assert paths.temp_files(str(tmp_path / short)) == [str(stale[0])]
    assert paths.temp_files(str(tmp_path / long)) == [str(stale[1])]


# --- standard input is checked while it is read ---------------------------------------------------


def png_header(width: int, height: int) -> bytes:
    """The signature and IHDR chunk of an 8-bit gray PNG: what Pillow needs to know the size."""
    body = b"IHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")


def test_stdin_bomb_is_refused_from_its_header_before_the_rest_arrives(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "poolcli", "max", "-", "-k", "2", "-o", "out.png",
                                "--max-pixels", "1000"], cwd=tmp_path, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdin is not None
    process.stdin.write(png_header(5000, 5000) + (1000).to_bytes(4, "big") + b"IDAT" + b"x\x9c")
    process.stdin.flush()  # the stream stays open: poolcli must decide from the header alone
    try:
        code = process.wait(timeout=60)
    finally:
        process.stdin.close()
    assert process.stderr is not None and process.stdout is not None
    stderr = process.stderr.read()
    process.stderr.close()
    process.stdout.close()
    assert code == 1
    assert b"image size (5000x5000 = 25000000 pixels) exceeds the limit of 1000 pixels" in stderr
    assert files_in(tmp_path) == []


def test_stdin_longer_than_the_byte_cap_is_refused(invoke, tmp_path):
    limit = pipeline.stream_byte_limit(1)
    assert limit is not None
    result = invoke("max", "-", "-k", "2", "-o", "out.png", "--max-pixels", "1", input=b"\0" * (limit + 1))
    assert result.exit_code == 1
    assert f"standard input holds more than {limit} bytes" in result.stderr
    assert files_in(tmp_path) == []


def test_stdin_array_header_claiming_too_much_is_refused(invoke, tmp_path):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (1, 100000, 100000)})
    result = invoke("max", "-", "-k", "2", "-o", "out.npy", input=buffer.getvalue())
    assert result.exit_code == 1 and "the array's header claims 80000000000 bytes" in result.stderr


# --- errors mapped on purpose -------------------------------------------------------------------------


def test_a_bool_array_names_its_dtype(invoke, tmp_path):
    np.save(tmp_path / "b.npy", np.zeros((4, 4), dtype=bool))
    result = invoke("max", "b.npy", "-k", "2")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("poolcli: error: b.npy: unsupported dtype bool; supported: uint8, int8, "
                                     "uint16, int16, uint32, int32, uint64, int64, float16, float32, float64")


def test_a_bug_is_an_internal_error_not_the_users_fault(invoke, tmp_path, course, monkeypatch):
    from poolcli import pixels

    def buggy(*args, **kwargs):
        raise ValueError("a bug, not a bad file")  # a plain ValueError is never the user's fault

    monkeypatch.setattr(pixels, "pool_array", buggy)
    monkeypatch.delenv("POOLCLI_DEBUG", raising=False)
    result = invoke("max", "course.npy", "-k", "2")
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert line.startswith("poolcli: error: course.npy: internal error: ValueError: a bug, not a bad file — "
                           "please report it at ")
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    shown = invoke("max", "course.npy", "-k", "2", "--debug")
    assert "Traceback (most recent call last)" in shown.stderr and 'raise ValueError("a bug' in shown.stderr
    monkeypatch.setenv("POOLCLI_DEBUG", "1")
    assert "Traceback (most recent call last)" in invoke("max", "course.npy", "-k", "2").stderr


def test_torch_rule_is_still_the_users_fault(invoke, tmp_path, course):
    result = invoke("max", "course.npy", "-k", "5")
    assert result.exit_code == 1
    assert "kernel 5 does not fit the (1, 3, 3) array" in result.stderr and "internal error" not in result.stderr


def test_a_bug_outside_the_pipeline_is_one_line_too(invoke, tmp_path, course, monkeypatch):
    from poolcli import batch

    def buggy(*args, **kwargs):
        raise RuntimeError("planning bug")

    monkeypatch.setattr(batch, "plan", buggy)
    monkeypatch.delenv("POOLCLI_DEBUG", raising=False)
    result = invoke("max", "course.npy", "-k", "2")
    assert result.exit_code == 1
    assert result.stderr.startswith("poolcli: error: internal error: RuntimeError: planning bug — please report")
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback (most recent call last)" in invoke("max", "course.npy", "-k", "2", "--debug").stderr


@needs_fifo
def test_skip_existing_never_skips_a_stream(invoke, tmp_path, rgb_png):
    expected = pooled_png(rgb_png, tmp_path, invoke)
    result, reader, _ = _pool_onto_a_fifo(invoke, tmp_path, "--skip-existing")
    assert result.exit_code == 0 and reader.data == expected


def test_write_all_undoes_a_new_output_when_a_later_rename_fails(tmp_path):
    (tmp_path / "b.bin").mkdir()  # a folder where the second file should go: its rename fails
    (tmp_path / "b.bin" / "keep").write_bytes(b"")
    with pytest.raises(paths.OutputError, match=r"^cannot write .*b\.bin: "):
        paths.write_all([(str(tmp_path / "a.bin"), lambda h: h.write(b"a")),
                         (str(tmp_path / "b.bin"), lambda h: h.write(b"b"))])
    assert files_in(tmp_path) == ["b.bin", "b.bin/keep"]


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs, where the system lets the tests mount one (root on Linux)."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                             capture_output=True) if sys.platform.startswith("linux") else None
    if mounted is None or mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_disk_full_while_writing_the_indices_leaves_nothing(invoke, tmp_path, small_disk):
    np.save(tmp_path / "big.npy", np.arange(200 * 200, dtype=np.float32).reshape(1, 200, 200))
    # The pooled values (159 KB) fit on the 256 KiB disk; the int64 indices (317 KB) then do not.
    result = invoke("max", "big.npy", "-k", "2", "-s", "1", "-o", "small/out.npy",
                    "--return-indices", "small/idx.npy")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("poolcli: error: big.npy: cannot write small/idx.npy: "
                                     "No space left on device")
    assert files_in(small_disk) == []  # neither output, nor a .part


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_an_endless_stream_without_a_header_is_refused_early(tmp_path):
    with open("/dev/zero", "rb") as zeros:
        done = run_poolcli("max", "-", "-k", "2", "-o", "out.png", cwd=tmp_path, stdin=zeros)
    assert done.returncode == 1
    assert done.stderr.decode().strip() == ("poolcli: error: -: standard input has no image or .npy header "
                                            f"in its first {64 << 20} bytes")


def test_multi_page_tiff_to_tiff_through_the_atomic_writer(invoke, tmp_path, rng):
    """Pillow's multi-page TIFF writer reads back what it wrote: the temporary handle must be readable."""
    pages = [rng.integers(0, 256, (8, 6, 3), dtype=np.uint8) for _ in range(3)]
    first, *rest = [Image.fromarray(page) for page in pages]
    first.save(tmp_path / "pages.tif", save_all=True, append_images=rest)
    result = invoke("max", "pages.tif", "-k", "2", "-o", "out.tif", "-q")
    assert (result.exit_code, result.stderr) == (0, "")
    with Image.open(tmp_path / "out.tif") as out:
        assert out.n_frames == 3
        for n, page in enumerate(pages):
            out.seek(n)
            expected = page.reshape(4, 2, 3, 2, 3).max(axis=(1, 3))
            assert np.array_equal(np.asarray(out.convert("RGB")), expected)
    assert files_in(tmp_path) == ["out.tif", "pages.tif"]
