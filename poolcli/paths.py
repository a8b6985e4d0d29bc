"""Where outputs land and how they are written, so that nothing the user pointed at is destroyed.

May import: the standard library, ``formats`` and ``errors`` only (no NumPy, Pillow, Rich or Click), so
that the command line, the pipeline, ``batch`` and ``explain`` can all share it.

- A regular file (or a new name) is replaced atomically: every output of one input is written to a
  temporary file in its folder, flushed to disk, and only then are all renamed over their targets
  (:func:`write_all`); on any failure or interrupt every temporary file is removed.
- A symlink is resolved, its target is replaced and the link is kept; a replaced file keeps its
  mode (and, where permitted, its owner).
- A character device, FIFO or socket (``/dev/null``, ``mkfifo`` pipes) is written *through*, as
  vips and ImageMagick do, never replaced; ``/dev/stdout`` is standard output.
- Outputs that a library writes by path (a tiled TIFF, a Zarr store folder, a memory-mapped
  ``.npy``) go through the same commit (:func:`staged`): a temporary file or folder beside the
  target, flushed, renamed into place; a Zarr store replaces a Zarr store, never another folder.
- Temporary names are ``.NAME.XXXXXXXX.part``, or ``.poolcli-HASH.XXXXXXXX.part`` when NAME is too
  long for that to fit in 255 bytes (:func:`temp_prefix`, :func:`temp_files`); a killed run's are
  removed by the next run for the same outputs (:func:`remove_temp_files`), folders included.

>>> temp_prefix("cat.png")
'.cat.png.'
>>> temp_prefix("x" * 250)[:9]
'.poolcli-'
>>> same_file("a/../b.png", "b.png")
True
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import stat
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from poolcli.errors import PoolcliError
from poolcli.formats import is_zarr_store

STDIO = "-"
# Names that mean standard output: writing to them is writing to "-".
STDOUT_NAMES = frozenset({"/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"})
TEMP_SUFFIX = ".part"
_NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems
_RANDOM_LENGTH = 8  # random characters in a temporary name
_HASH_PREFIX = ".poolcli-"

Writer = Callable[[BinaryIO], object]


class OutputError(PoolcliError, OSError):
    """An output that cannot be written, with the reason to show (never a temporary name).

    An ``OSError`` (with ``filename``, the output as given) so that callers catching OS errors
    keep working; ``str()`` is the one-line reason.
    """

    def __init__(self, reason: str, filename: str | None = None, code: int = 0):
        super().__init__(code, reason)
        self.filename = filename

    def __str__(self) -> str:
        return str(self.strerror)


def is_stdout(path: str) -> bool:
    """Does ``path`` mean standard output (``-``, ``/dev/stdout``, ``/dev/fd/1``)?"""
    return path == STDIO or path in STDOUT_NAMES


def _mode(path: str) -> int | None:
    try:
        return os.stat(path).st_mode  # through links
    except (OSError, ValueError):
        return None


def is_stream(path: str) -> bool:
    """Is ``path`` (through links) a character device, FIFO or socket: written or read through,
    never replaced or seeked?"""
    mode = _mode(path)
    return mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode))


def is_pipe_like(path: str) -> bool:
    """An input with no folder to write beside: a stream, or a descriptor name (``/dev/stdin``,
    ``/dev/fd/N``, ``<(process substitution)``) even when it leads to a regular file."""
    names = ("/dev/stdin", "/dev/fd/", "/proc/self/fd/", "/dev/stdout", "/dev/stderr")
    return path.startswith(names) or is_stream(path)


def same_file(a: str, b: str) -> bool:
    """Do ``a`` and ``b`` name the same file: the same path once made absolute and resolved
    through links, or the same existing file (device and inode)?

    >>> same_file("x.png", "./x.png"), same_file("x.png", "y.png")
    (True, False)
    """
    if os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b)):
        return True
    if os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b)):
        return True  # a link to a file that does not exist yet
    try:
        return os.path.samestat(os.stat(a), os.stat(b))
    except (OSError, ValueError):
        return False


def resolve(path: str) -> str:
    """The file a write to ``path`` replaces: a symlink's final target, else ``path`` itself."""
    return os.path.realpath(path) if os.path.islink(path) else path


def temp_prefix(name: str) -> str:
    """The start of a temporary name for the output file ``name`` (one path component)."""
    prefix = f".{name}."
    if len(os.fsencode(prefix)) + _RANDOM_LENGTH + len(TEMP_SUFFIX) <= _NAME_MAX:
        return prefix
    import hashlib  # here: only names too long for a plain prefix need it

    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    return f"{_HASH_PREFIX}{digest}."


def temp_files(path: str) -> list[str]:
    """The temporary files (of any run) for the output ``path``, in the folder of the file it replaces."""
    target = resolve(path)
    folder = os.path.dirname(target) or "."
    prefix = temp_prefix(os.path.basename(target))
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [os.path.join(folder, name) for name in names
            if name.startswith(prefix) and name.endswith(TEMP_SUFFIX)
            and len(name) == len(prefix) + _RANDOM_LENGTH + len(TEMP_SUFFIX)]


# Temporary names (temp_prefix): ".NAME.XXXXXXXX.part", or ".poolcli-HASH.XXXXXXXX.part" when NAME
# is too long for that; XXXXXXXX is the random part (ours, or tempfile's for a folder).
_TEMP_NAME = re.compile(r"(\..+\.)[a-z0-9_]{8}\.part", re.DOTALL)


def remove_temp_files(outputs: Sequence[str], older_than: float | None = None) -> None:
    """Remove the temporary files and folders of these outputs (any run's, or only those last
    modified before ``older_than``, a ``time.time()``): one listing per folder.

    Only names of poolcli's own pattern for these very outputs are touched, so another program's
    files, and another poolcli run's files for other outputs in the same folder, are left alone.
    A temporary folder (a Zarr store or a pyramid's scratch, killed half-written) goes whole.
    """
    wanted: dict[str, set[str]] = {}
    for output in outputs:
        folder, name = os.path.split(resolve(output))  # a link's target is written beside the target
        wanted.setdefault(folder or ".", set()).add(temp_prefix(name))
    for folder, prefixes in wanted.items():
        try:
            with os.scandir(folder) as scan:
                found = [entry for entry in scan if entry.name.endswith(TEMP_SUFFIX)]
        except OSError:
            continue
        for entry in found:
            match = _TEMP_NAME.fullmatch(entry.name)
            if not match or match.group(1) not in prefixes:
                continue
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                if older_than is not None and info.st_mtime >= older_than:
                    continue
                if stat.S_ISREG(info.st_mode):
                    os.unlink(entry.path)
                elif stat.S_ISDIR(info.st_mode):
                    remove(entry.path)


def remove(path: str) -> None:
    """Remove a temporary file or folder, whatever is left of it (no error if it is gone)."""
    if os.path.isdir(path) and not os.path.islink(path):
        import shutil  # here: only folder outputs need it

        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)


@contextlib.contextmanager
def staged(path: str, *, directory: bool = False, make_folders: bool = False) -> Iterator[str]:
    """A temporary path for an output that a library writes by name, committed like :func:`write_all`.

    Yields a new temporary file (or folder, with ``directory``) beside the file that ``path``
    replaces (a symlink's target).  When the block ends normally the temporary is flushed to disk
    and renamed over the target, keeping the link and the replaced file's mode; a Zarr store
    replaces a Zarr store, and any other existing folder is refused.  A stream target (a device,
    FIFO or standard output) gets the finished file's bytes written through, never replaced
    (a folder cannot be).  On any failure or interrupt the temporary is removed and the target
    is untouched.

    Raises
    ------
    OutputError
        A missing folder, a failed write or rename (naming ``path``, never the temporary), a folder
        output onto a stream or onto a folder that is not a Zarr store.
    """
    through = is_stdout(path) or is_stream(path)
    if through and directory:
        raise OutputError(f"cannot write {path}: a Zarr store is a folder, and this is a stream or device", path)
    target = path if through else resolve(path)
    folder = (os.path.dirname(target) or ".") if not through else None
    if folder is not None and not os.path.isdir(folder):
        if not make_folders:
            raise OutputError(f"cannot write {path}: the folder {folder} does not exist", path, errno.ENOENT)
        with _named(path):
            make_folder_tree(folder)
    if directory and os.path.isdir(target) and not is_zarr_store(target):
        raise OutputError(f"cannot write {path}: it exists and is not a Zarr store; remove it or choose another -o",
                          path, errno.EEXIST)
    with _named(path):
        temporary = _new_temp(folder, os.path.basename(target), directory)
    try:
        yield temporary
        with _named(path):
            if through:
                _copy_through(temporary, path)
            else:
                _sync_tree(temporary) if directory else sync_file(temporary)
                _keep_mode(temporary, target, directory)
                _replace(temporary, target, directory)
                _fsync_folder(folder or ".", now=True)  # a giant image's: its own sync (a worker's is not seen)
    finally:
        remove(temporary)


@contextlib.contextmanager
def scratch(path: str) -> Iterator[str]:
    """A temporary folder beside the output ``path`` for work that is never committed (a pyramid's
    levels, read back once), removed at the end; named as the output's temporaries are, so that
    a killed run's is removed by the next run for the same output."""
    target = resolve(path)
    with _named(path):
        folder = _new_temp(os.path.dirname(target) or ".", os.path.basename(target), True)
    try:
        yield folder
    finally:
        remove(folder)


def _new_temp(folder: str | None, name: str, directory: bool) -> str:
    """A new temporary file or folder named for ``name`` in ``folder`` (None: the system's
    temporary folder, for a stream target)."""
    if folder is None:
        import tempfile  # a stream target only

        descriptor, temporary = tempfile.mkstemp(prefix=temp_prefix(name), suffix=TEMP_SUFFIX)
        os.close(descriptor)
        return temporary
    if directory:
        for _ in range(100):
            temporary = os.path.join(folder, f"{temp_prefix(name)}{os.urandom(_RANDOM_LENGTH // 2).hex()}{TEMP_SUFFIX}")
            try:
                os.mkdir(temporary, 0o700)
                return temporary
            except FileExistsError:
                continue
        raise FileExistsError(errno.EEXIST, "no unused temporary name", os.path.join(folder, name))
    descriptor, temporary = _create_temp(folder, temp_prefix(name))
    os.close(descriptor)
    return temporary


def sync_file(path: str) -> None:
    """fsync one file by its path."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


_IO_THREADS = 8  # file system calls that wait on the disk: more threads than CPUs pay off
_io_pool: Any = None


def io_pool() -> Any:
    """Threads for many small file operations at once (a Zarr store's chunk files, their fsyncs):
    the disk's journal then takes them together (4,000 fsyncs one after the other took 3.9 s;
    on 16 threads, 0.3 s)."""
    global _io_pool
    if _io_pool is None or _io_pool[0] != os.getpid():
        from concurrent.futures import ThreadPoolExecutor

        _io_pool = (os.getpid(), ThreadPoolExecutor(_IO_THREADS, thread_name_prefix="poolcli-io"))
    return _io_pool[1]


@contextlib.contextmanager
def written_back(path: str) -> Iterator[None]:
    """While a large file is written at ``path``, a thread flushes what is written so far to
    disk, again and again: the disk works while the rest is computed, and the fsync before the
    commit finds little left (a 1 GiB pyramid otherwise waited seconds for it at the end)."""
    import threading

    done = threading.Event()

    def flush() -> None:
        descriptor = None
        try:
            while not done.wait(0.2):
                if descriptor is None:
                    try:
                        descriptor = os.open(path, os.O_RDONLY)
                    except OSError:
                        continue  # not created yet
                os.fdatasync(descriptor)
        except OSError:
            pass  # the commit's own fsync reports what matters
        finally:
            if descriptor is not None:
                os.close(descriptor)

    thread = threading.Thread(target=flush, name="poolcli-writeback", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _sync_tree(folder: str) -> None:
    """Flush a folder output to disk before it is renamed into place: every file and folder in it."""
    folders: list[str] = []
    files: list[str] = []
    for root, _, names in os.walk(folder):
        files.extend(os.path.join(root, name) for name in names)
        folders.append(root)
    list(io_pool().map(sync_file, files))
    list(io_pool().map(_fsync_folder, folders))


def _keep_mode(temporary: str, target: str, directory: bool) -> None:
    """The temporary gets the mode (and owner, where permitted) of the file it replaces, or the
    umask's default for a new one."""
    try:
        old = os.stat(target)
    except OSError:
        os.chmod(temporary, (0o777 if directory else 0o666) & ~_umask())
        return
    os.chmod(temporary, stat.S_IMODE(old.st_mode))
    if hasattr(os, "chown"):
        with contextlib.suppress(OSError):
            os.chown(temporary, old.st_uid, old.st_gid)


def _replace(temporary: str, target: str, directory: bool) -> None:
    """Rename into place; a folder over an existing Zarr store goes through a second name, so
    that the old store is gone only once the new one stands."""
    if not (directory and os.path.isdir(target)):
        os.replace(temporary, target)
        return
    old = _new_temp(os.path.dirname(target) or ".", os.path.basename(target), True)
    os.rmdir(old)
    os.replace(target, old)
    try:
        os.replace(temporary, target)
    except BaseException:
        os.replace(old, target)
        raise
    remove(old)


def _copy_through(temporary: str, path: str) -> None:
    """A finished file's bytes, written through to a stream target in pieces."""
    with open(temporary, "rb") as source:
        if stat.S_ISSOCK(_mode(path) or 0):
            import shutil

            _write_stream(path, lambda handle: shutil.copyfileobj(source, handle))
            return
        if is_stdout(path):
            sink: Any = sys.stdout.buffer
            while piece := source.read(1 << 20):
                sink.write(piece)
            sink.flush()
            return
        with open(path, "wb") as sink:  # a device or FIFO: opened, never created or replaced
            while piece := source.read(1 << 20):
                sink.write(piece)


def missing_folder(path: str) -> str | None:
    """The folder a file output would need but that does not exist, or None."""
    if is_stdout(path) or is_stream(path):
        return None
    folder = os.path.dirname(resolve(path)) or "."
    return None if os.path.isdir(folder) else folder


@dataclass
class _Pending:
    shown: str  # the path as the user gave it: the one errors name
    target: str  # the file that is replaced (a symlink's target)
    temp: str | None = None


def make_folder_tree(folder: str) -> None:
    """``os.makedirs(folder, exist_ok=True)`` without its recursion (a frame per level), so that a
    mirrored tree of any depth can be written."""
    missing = []
    while folder and not os.path.isdir(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    for path in reversed(missing):
        try:
            os.mkdir(path)
        except FileExistsError:
            if not os.path.isdir(path):
                raise


def write_all(outputs: Sequence[tuple[str, Writer]], *, make_folders: bool = False) -> None:
    """Write several outputs so that they appear together or not at all.

    Files are written to temporaries in their folders and fsynced; streams (standard output,
    devices, FIFOs, sockets) are written next; only then are the temporaries renamed over their
    targets, and the folders fsynced (best effort).  Any failure, Ctrl-C included, removes every
    temporary file (and an output a failed later rename would leave alone, if it is new); errors
    name the outputs as given, never a temporary file.

    Parameters
    ----------
    outputs
        ``(path, write)`` pairs; ``write(handle)`` writes the whole content to a binary handle.
    make_folders
        Create missing folders (mirrored subfolders of a folder output); otherwise a missing
        folder is an :class:`OutputError` and nothing is written.

    Raises
    ------
    OutputError
        A missing folder, or a write, flush or rename that failed (with the OS reason).
    """
    files: list[tuple[_Pending, Writer]] = []
    streams: list[tuple[str, Writer]] = []
    for path, write in outputs:
        if is_stdout(path) or is_stream(path):
            streams.append((path, write))
        else:
            files.append((_Pending(path, resolve(path)), write))
    for pending, _ in files:
        folder = os.path.dirname(pending.target) or "."
        if os.path.isdir(folder):
            continue
        if not make_folders:
            raise OutputError(f"cannot write {pending.shown}: the folder {folder} does not exist", pending.shown,
                              errno.ENOENT)
        with _named(pending.shown):
            make_folder_tree(folder)
    try:
        for pending, write in files:
            with _named(pending.shown):
                _write_temp(pending, write, flush=_staging is None or bool(streams))
        for path, write in streams:
            with _named(path):
                _write_stream(path, write)
        if _staging is not None and not streams:  # a folder run: flushed and renamed by its group commit
            _staging.append([(pending.shown, pending.temp, pending.target) for pending, _ in files
                             if pending.temp is not None])
            for pending, _ in files:
                pending.temp = None
            return
        created: list[str] = []  # renamed targets that did not exist: undone if a later rename fails
        try:
            for pending, _ in files:
                with _named(pending.shown):
                    assert pending.temp is not None
                    existed = os.path.lexists(pending.target)
                    os.replace(pending.temp, pending.target)
                pending.temp = None
                if not existed:
                    created.append(pending.target)
        except BaseException:
            for target in created:
                with contextlib.suppress(OSError):
                    os.unlink(target)
            raise
    finally:
        for pending, _ in files:
            if pending.temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(pending.temp)
    for folder in {os.path.dirname(p.target) or "." for p, _ in files}:
        _fsync_folder(folder)


@contextlib.contextmanager
def _named(shown: str) -> Iterator[None]:
    """OS errors become one reason naming the output as given (not the temporary file)."""
    try:
        yield
    except OSError as error:
        raise OutputError(f"cannot write {shown}: {error.strerror or error}", shown, error.errno or 0) from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _create_temp(folder: str, prefix: str) -> tuple[int, str]:
    """A new file ``prefix`` + 8 random characters + ``.part`` in ``folder``, created exclusively
    and private (as ``tempfile.mkstemp``, whose import costs more than a small run's pooling)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        path = os.path.join(folder, f"{prefix}{os.urandom(_RANDOM_LENGTH // 2).hex()}{TEMP_SUFFIX}")
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary name", os.path.join(folder, prefix))


def _write_temp(pending: _Pending, write: Writer, flush: bool = True) -> None:
    folder = os.path.dirname(pending.target) or "."
    descriptor, pending.temp = _create_temp(folder, temp_prefix(os.path.basename(pending.target)))
    with os.fdopen(descriptor, "w+b") as handle:  # readable too: Pillow's multi-page TIFF writer reads back
        write(cast(BinaryIO, _Sink(handle)))
        handle.flush()
        if flush:
            os.fsync(handle.fileno())  # a crash after the rename must not leave an empty file
    _keep_mode(pending.temp, pending.target, directory=False)


class _Sink(io.RawIOBase):
    """A file handle without ``fileno``: NumPy's ``tofile`` and Pillow's direct encoder write
    through C and lose the OS reason of a failed write ("39601 requested and 12784 written");
    through Python's ``write`` a full disk is ``ENOSPC``, named as such."""

    def __init__(self, raw: BinaryIO):
        super().__init__()
        self._raw = raw

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._raw.readinto(buffer)  # type: ignore[attr-defined]

    def write(self, data: Any) -> int:
        self._raw.write(data)
        return memoryview(data).nbytes

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def flush(self) -> None:
        if not self._raw.closed:  # also called when the sink is collected, after the file is closed
            self._raw.flush()


def _write_stream(path: str, write: Writer) -> None:
    """Write through: the content is built in memory first (encoders may seek), then sent."""
    buffer = io.BytesIO()
    write(buffer)
    data = buffer.getbuffer()
    if is_stdout(path):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    elif stat.S_ISSOCK(_mode(path) or 0):
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.connect(path)
            connection.sendall(data)
    else:
        with open(path, "wb") as handle:  # a device or FIFO: opened, never created or replaced
            handle.write(data)


# A folder run (:class:`FolderRun`): the folders whose sync is left to its end, and the outputs
# of this process written to temporary files whose flush and rename are left to a group commit
# (one list per write_all: (shown, temporary, target) of each file).  None outside a folder run.
_deferred_folders: set[str] | None = None
_staging: list[list[tuple[str, str, str]]] | None = None

# A group commit waits for at most this many written files, or this many seconds.
GROUP_FILES = 64
GROUP_SECONDS = 0.5


class FolderRun:
    """Many outputs on this machine, committed in groups: the durability of one output at a time,
    paid once for many.

    Measured on a folder of 120 photos (ext4): flushing one file took 3.8 ms and syncing its
    folder 2.4 ms, against 6 ms for all the rest of the work on one photo; a plain Pillow loop
    pays neither.  Chosen: inside a folder run, :func:`write_all` writes each output whole to
    its temporary file and leaves it there (:func:`take_staged` hands the list to whoever
    commits: this process, or a forked worker's parent, whose death makes the worker remove
    them, :func:`discard_handed`); :meth:`commit` then flushes every written
    temporary file with one ``syncfs`` per file system (``fsync`` of each where there is none)
    and only then renames them into place; each folder is synced once, when the run ends.
    :meth:`start_commit` does the same behind the work, on a thread, so that a run does not
    stand still while the disk catches up (a ``syncfs`` also waits for other programs' writes).

    So the promise holds as before: a crash never leaves a partial or empty file under an
    output's name (each is whole or absent: a temporary file is renamed only after it is on
    disk), and an output counts as written (reported) only once it is in place.  What changes:
    outputs appear in groups (at most :data:`GROUP_FILES` files or :data:`GROUP_SECONDS` after
    they were written), and a power loss before the run ends may take back renames (the output
    is then absent, or the file it replaced is still there), never their contents.
    """

    def __init__(self) -> None:
        self.folders: set[str] = set()
        self.pending: list[tuple[list[tuple[str, str, str]], object]] = []
        self.since = 0.0
        self.committed = False  # the first output goes into place at once: the run is seen to start
        self._started: deque[tuple[_Committer, Any]] = deque()  # each commit started, with its payload

    def __enter__(self) -> FolderRun:
        global _deferred_folders, _staging
        self._outer = (_deferred_folders, _staging)
        _deferred_folders, _staging = self.folders, []
        return self

    def __exit__(self, *exc: object) -> None:
        global _deferred_folders, _staging
        for committer, _ in self._started:  # the commits under way finish (their renames are whole)
            committer.wait()
        _deferred_folders, _staging = self._outer
        for group, _ in self.pending:  # not committed (an error on the way here): nothing appears
            discard(group)
        self.pending.clear()
        for folder in sorted(self.folders):
            _fsync_folder(folder, now=True)

    def add(self, staged: list[list[tuple[str, str, str]]], token: object) -> None:
        """Outputs written to temporary files (:func:`take_staged`), for the next commit; the
        commit gives ``token`` back with the outcome."""
        import time

        if not self.pending:
            self.since = time.monotonic()
        self.pending.extend((group, token) for group in staged)

    def due(self) -> bool:
        """Whether enough is waiting, or long enough, for a commit."""
        import time

        waited = time.monotonic() - self.since
        return bool(self.pending) and (not self.committed or len(self.pending) >= GROUP_FILES
                                       or waited >= GROUP_SECONDS)

    def commit(self) -> dict[int, str]:
        """Flush every waiting temporary file to disk, then rename each group into place (all of
        a group, or none of it); returns the reason of each group that failed, by ``id`` of its
        token."""
        return _commit(self._take_pending())

    def _take_pending(self) -> list[tuple[list[tuple[str, str, str]], object]]:
        """The groups waiting for a commit, now this run's to commit (the run has begun)."""
        pending, self.pending = self.pending, []
        self.committed = self.committed or bool(pending)
        return pending

    def start_commit(self, payload: object) -> None:
        """:meth:`commit` what is waiting on this run's committer thread, while the caller goes
        on working: the flush waits on the disk (a ``syncfs`` waits for every file the system
        has to write, other programs' too: 2 to 400 ms measured on a shared machine), not on
        the CPU.  Commits run one at a time, in the order started; :meth:`finished_commits`
        gives back each one's ``payload`` with its failures."""
        first = bool(self.pending) and not self.committed
        committer = _Committer(self._take_pending(), self._started[-1][0] if self._started else None)
        if first:  # the first output goes into place at once, as with commit(): the run is seen to start
            committer.run()
        else:
            committer.start()
        self._started.append((committer, payload))

    def finished_commits(self, wait: bool = False) -> list[tuple[Any, dict[int, str]]]:
        """``(payload, failures)`` of the commits started that have finished, in order (with
        ``wait``: of all of them, once they have); a commit's exception is raised here."""
        finished = []
        while self._started and (wait or not self._started[0][0].is_alive()):
            committer, payload = self._started.popleft()
            committer.wait()
            if committer.error is not None:
                raise committer.error
            finished.append((payload, committer.failed))
        return finished


class _Committer(threading.Thread):
    """One :meth:`FolderRun.start_commit`: a thread that lives only while it commits (after the
    commit started before it), so that no idle thread is there when a worker is forked."""

    def __init__(self, pending: list[tuple[list[tuple[str, str, str]], object]], after: _Committer | None) -> None:
        super().__init__(name="poolcli-commit", daemon=True)
        self.pending, self.after = pending, after
        self.failed: dict[int, str] = {}
        self.error: BaseException | None = None

    def wait(self) -> None:
        """Until the commit is done (at once for one run in the caller's thread)."""
        if self.ident is not None:
            self.join()

    def run(self) -> None:
        if self.after is not None:
            self.after.wait()
            self.after = None  # no chain of every commit of the run kept alive
        try:
            self.failed = _commit(self.pending)
        except BaseException as error:  # given to the run's thread by finished_commits
            self.error = error


def _commit(pending: list[tuple[list[tuple[str, str, str]], object]]) -> dict[int, str]:
    """:meth:`FolderRun.commit` of the groups ``pending``: flush, then rename each group."""
    failed: dict[int, str] = {}
    try:
        _flush_files([temp for group, _ in pending for _, temp, _ in group])
    except OSError as error:
        for group, token in pending:
            failed[id(token)] = f"cannot write {group[0][0]}: {error.strerror or error}"
            discard(group)
        return failed
    for index, (group, token) in enumerate(pending):
        try:
            _rename_group(group)
        except OutputError as error:
            failed[id(token)] = str(error)
        except BaseException:
            for rest, _ in pending[index:]:
                discard(rest)
            raise
    return failed


def take_staged() -> list[list[tuple[str, str, str]]]:
    """The outputs this process wrote to temporary files since the last call, inside a folder
    run (for :meth:`FolderRun.add`); empty outside one."""
    if _staging is None:
        return []
    staged = list(_staging)
    _staging.clear()
    _handed.extend(staged)
    if len(_handed) > 2 * GROUP_FILES:  # most were committed (renamed away) by now
        _handed[:] = [group for group in _handed if any(os.path.lexists(temp) for _, temp, _ in group)]
    return staged


_handed: list[list[tuple[str, str, str]]] = []  # what take_staged gave away, in this process


def discard_handed() -> None:
    """Remove the temporary files this process handed over (:func:`take_staged`) that are still
    there: for a worker whose parent, which commits them, is gone."""
    for group in _handed:
        discard(group)
    _handed.clear()


def discard(group: list[tuple[str, str, str]]) -> None:
    """Remove the temporary files of written but uncommitted outputs."""
    for _, temp, _ in group:
        with contextlib.suppress(OSError):
            os.unlink(temp)


def _flush_files(temps: list[str]) -> None:
    """Every file in ``temps`` on disk: one ``syncfs`` per file system where Linux has it."""
    syncfs = _syncfs()
    devices: dict[int, str] = {}
    for temp in temps:
        devices.setdefault(os.stat(temp).st_dev, temp)
    for temp in (devices.values() if syncfs is not None else temps):
        descriptor = os.open(temp, os.O_RDONLY)
        try:
            if syncfs is None:
                os.fsync(descriptor)
            elif syncfs(descriptor) != 0:
                import ctypes

                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code))
        finally:
            os.close(descriptor)


_syncfs_function: list[Any] = []


def _syncfs() -> Any:
    """libc's ``syncfs`` (Linux), or None."""
    if not _syncfs_function:
        found = None
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                import ctypes

                found = ctypes.CDLL(None, use_errno=True).syncfs
        _syncfs_function.append(found)
    return _syncfs_function[0]


def _rename_group(group: list[tuple[str, str, str]]) -> None:
    """Rename the flushed temporary files of one write over their targets: all, or none (a
    target created before a failed rename is removed again); the folders' syncs wait."""
    created: list[str] = []
    try:
        for shown, temp, target in group:
            with _named(shown):
                existed = os.path.lexists(target)
                os.replace(temp, target)
            if not existed:
                created.append(target)
            _fsync_folder(os.path.dirname(target) or ".")
    except BaseException:
        for target in created:
            with contextlib.suppress(OSError):
                os.unlink(target)
        discard(group)
        raise


def _fsync_folder(folder: str, now: bool = False) -> None:
    """Make the renames durable (best effort: not every system can open a folder); left to the
    end of a :class:`FolderRun`, unless ``now``."""
    if _deferred_folders is not None and not now:  # a folder run's: synced once, at its end
        _deferred_folders.add(folder)
        return
    with contextlib.suppress(OSError, AttributeError):
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
