"""Many inputs: where each output goes, and running the jobs (files in turn, or on worker
processes for folders), with per-file isolation: one bad file never stops the others.

May import: the pipeline (NumPy, Pillow) at import time; Rich only through report, when something is
drawn; no Click.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from stat import S_ISREG
from types import ModuleType
from typing import TYPE_CHECKING

from poolcli import brief, formats, paths, storage
from poolcli.errors import ExecutorError, PoolcliError
from poolcli.exits import ExitCode, exit_code, stop_message
from poolcli.listing import ARRAY_EXTENSION, is_candidate, walk, walk_url
from poolcli.params import PoolParams
from poolcli.pipeline import STDIO, Job, Options, local_outputs, run
from poolcli.results import Result, json_line, printable

if TYPE_CHECKING:
    from poolcli.executors import Executor

ZARR_EXTENSION = ".zarr"  # Zarr stores are folders, but inputs: never walked


class PlanError(PoolcliError):
    """A usage problem found before any file is read or written (exit code 2)."""




@dataclass(frozen=True)
class Source:
    """One input file and where it came from: a folder given on the command line (or None)."""

    path: Path | None  # None for stdin (and for URLs)
    root: Path | None = None  # the folder it was found in, for mirrored output paths
    typed: str | None = None  # the path as typed: the folder given joined with the file's path in it
    url: str | None = None  # an fsspec URL (s3://...) instead of a path
    root_url: str | None = None  # the folder URL it was found in

    @property
    def label(self) -> str:
        if self.url is not None:
            return storage.redact(self.typed or self.url)
        if self.path is None:
            return STDIO
        return self.typed or str(self.path)

    @property
    def location(self) -> str:
        """Where the job reads: the path, the URL, or "-"."""
        if self.url is not None:
            return self.url
        return STDIO if self.path is None else (self.typed or str(self.path))


def output_extension(source_suffix: str, is_array: bool, file_format: str | None) -> str:
    """The extension of an output: --format's, else the input's when poolcli can write it."""
    if source_suffix.lower() == ZARR_EXTENSION and file_format != "NPY":
        return ZARR_EXTENSION  # Zarr in, Zarr out
    if file_format == "NPY" or is_array:
        return ARRAY_EXTENSION  # arrays stay arrays; --format is for the images
    if file_format:
        return formats.FORMAT_EXTENSIONS[file_format]
    if formats.format_for_extension(source_suffix):
        return source_suffix
    return ".png"  # read-only formats (.ppm, .tga, ...) are written as PNG


def default_output(path: Path, params: PoolParams, file_format: str | None) -> Path:
    """Beside the input, named after the operation: ``cat.png`` → ``cat.max-k2.png``."""
    suffix = path.suffix
    is_array = suffix.lower() == ARRAY_EXTENSION
    stem, extension = path.stem, output_extension(suffix, is_array, file_format)
    if stem.lower().endswith(".ome") and extension in (ZARR_EXTENSION, ".tif", ".tiff"):
        stem, extension = stem[:-4], stem[-4:] + extension  # x.ome.zarr → x.max-k2.ome.zarr
    return path.with_name(f"{stem}.{params.slug()}{extension}")


def _is_folder_input(raw: str, storage_options: str | None) -> bool:
    if raw == STDIO:
        return False
    if storage.is_url(raw):
        if storage.is_zarr_url(raw):
            return False  # a Zarr store is one input
        return raw.endswith("/") or storage.isdir(raw, storage_options)
    return Path(raw).is_dir() and not formats.is_zarr_path(raw)  # a Zarr store is one input


def iter_sources(inputs: list[str], recursive: bool, storage_options: str | None = None,
                 unwalked: set[str] | None = None) -> Iterator[Source]:
    """The command line's inputs as files, folders (and URL prefixes) walked lazily in order; the
    subfolders a walk without ``recursive`` leaves alone go into ``unwalked``."""
    for raw in inputs:
        if raw == STDIO:
            yield Source(None)
        elif storage.is_url(raw):
            if _is_folder_input(raw, storage_options):
                for found in walk_url(raw, recursive, None, storage_options, unwalked):
                    yield Source(None, url=found, root_url=raw)
            else:
                yield Source(None, url=raw)
        elif _is_folder_input(raw, storage_options):
            yield from (Source(Path(found), Path(raw), found) for found in walk(raw, recursive, unwalked))
        else:
            yield Source(Path(raw))  # a missing file is reported when it is processed


def collect(inputs: list[str], recursive: bool, storage_options: str | None = None,
            unwalked: set[str] | None = None) -> tuple[list[Source], bool]:
    """Expand the command line's inputs into files; also say whether any input was a folder."""
    sources = list(iter_sources(inputs, recursive, storage_options, unwalked))
    return sources, any(_is_folder_input(raw, storage_options) for raw in inputs)


@dataclass(frozen=True)
class _Target:
    """Where the outputs of a run go, decided once from -o / -O."""

    output: str | None
    output_dir: str | None
    folder: str | None  # the folder outputs are mirrored into, if any
    several: bool


def _target(inputs: list[str], output: str | None, output_dir: str | None, options: Options, any_folder: bool,
            stdin_inputs: int) -> _Target:
    """The usage rules of a run's outputs, checked before any file is read."""
    if output is not None and paths.is_stdout(output):
        output = STDIO
    several = len(inputs) > 1 or any_folder
    if any_folder and output is None and output_dir is None:
        raise PlanError("-o/--output DIR is required when an input is a folder (or -O/--output-dir DIR)")
    if stdin_inputs and several:
        raise PlanError("'-' (standard input) must be the only input")
    if output == STDIO and several:
        raise PlanError("-o - (standard output) takes a single input")
    if options.indices_path and several:
        raise PlanError("--return-indices takes a single input")
    if several and output is not None and _is_file(output, options):
        raise PlanError(f"-o {storage.redact(output)}: with several inputs, -o must be a folder, and this is a file")
    if output_dir is not None and _is_file(output_dir, options):
        raise PlanError(f"-O {storage.redact(output_dir)}: this is a file, not a folder")
    folder = output_dir
    if folder is None and output is not None and output != STDIO and (several or _is_folder(output, options)):
        folder = output
    return _Target(output, output_dir, folder, several)


def _job(source: Source, target: _Target, params: PoolParams, options: Options) -> Job:
    if target.folder is not None:
        option = f"-O {target.folder}" if target.output_dir is not None else f"-o {target.folder}"
        return Job(source.location, _output_in(source, target.folder, option, options), source.label,
                   make_folders=True)
    return Job(source.location, _output_for(source, target.output, params, options, target.several), source.label)


def plan(inputs: list[str], output: str | None, params: PoolParams, options: Options,
         recursive: bool = False, output_dir: str | None = None, unwalked: set[str] | None = None) -> list[Job]:
    """Decide every output path before anything is written, and refuse what would lose data.

    ``-o`` ending in ``/`` or naming an existing folder is a folder, also for one input;
    ``output_dir`` (``-O``) always is.  ``/dev/stdout`` is ``-``.  Inputs and outputs may be
    fsspec URLs (:mod:`poolcli.storage`).  Subfolders left alone without ``recursive`` are added
    to ``unwalked``.

    Raises
    ------
    PlanError
        For usage problems: a folder without ``-o``, several inputs to one file or to stdout,
        an output that is an input, two outputs that are one file.
    """
    try:
        sources, any_folder = collect(inputs, recursive, options.storage_options, unwalked)
        target = _target(inputs, output, output_dir, options, any_folder,
                         sum(s.path is None and s.url is None for s in sources))
        jobs = [_job(source, target, params, options) for source in sources]
    except storage.StorageFault:
        raise  # the store's fault, not the command line's: exit 1
    except storage.StorageError as error:
        raise PlanError(str(error)) from None
    _refuse_collisions(jobs, options)
    return jobs


class JobStream:
    """The jobs of a run without holding them: each iteration walks the inputs again, lazily.

    Made by :func:`plan_stream`, which has walked once already to count the jobs and refuse
    collisions, so that ``len()`` works and nothing bad is found after the first task.
    """

    def __init__(self, make: Callable[[], Iterator[Job]], count: int) -> None:
        self._make, self._count = make, count

    def __iter__(self) -> Iterator[Job]:
        return self._make()

    def __len__(self) -> int:
        return self._count


def plan_stream(inputs: list[str], output: str | None, params: PoolParams, options: Options,
                recursive: bool = False, output_dir: str | None = None,
                unwalked: set[str] | None = None) -> JobStream:
    """:func:`plan` for very many files (a cluster run): the same outputs and refusals, in memory
    that does not grow with the number of files in a folder.

    Outputs inside an input folder are never taken as inputs (the walk runs while they are
    written).  Collisions are looked for within each output folder (for one folder input, the
    only place they can happen); several inputs keep every output name, as :func:`plan` does.
    """
    try:
        any_folder = any(_is_folder_input(raw, options.storage_options) for raw in inputs)
        target = _target(inputs, output, output_dir, options, any_folder, inputs.count(STDIO))
    except storage.StorageFault:
        raise  # the store's fault, not the command line's: exit 1
    except storage.StorageError as error:
        raise PlanError(str(error)) from None
    exclude = _key(target.folder).rstrip("/") + "/" if target.folder is not None else None

    def make() -> Iterator[Job]:
        for source in iter_sources(inputs, recursive, options.storage_options, unwalked):
            if exclude and _key(source.location).startswith(exclude):
                continue  # this run's own outputs
            yield _job(source, target, params, options)

    guard = _Guard(inputs, recursive, options)
    count = 0
    try:
        for job in make():
            guard.check(job)
            count += 1
    except storage.StorageFault:
        raise  # the store's fault, not the command line's: exit 1
    except storage.StorageError as error:
        raise PlanError(str(error)) from None
    return JobStream(make, count)


class _Guard:
    """:func:`_refuse_collisions` for a stream: the same refusals, remembering the outputs of the
    folders on the walk's current path only (when there is a single input)."""

    def __init__(self, inputs: list[str], recursive: bool, options: Options) -> None:
        self.options, self.recursive = options, recursive
        folders = [raw for raw in inputs if _is_folder_input(raw, options.storage_options)]
        self.roots = [_key(raw).rstrip("/") for raw in folders]
        files = [raw for raw in inputs if raw != STDIO and raw not in folders]
        self.files = {_key(raw): raw for raw in files}
        self.file_ids = {_file_id(raw): raw for raw in files if not storage.is_url(raw)}
        self.file_ids.pop(None, None)
        self.forget = len(inputs) == 1
        self.seen: dict[str, dict[str, str]] = {}

    def check(self, job: Job) -> None:
        if job.output == STDIO:
            return
        same = self._input_at(job.output)
        if same is not None:
            out = storage.redact(job.output)
            raise PlanError(f"refusing to overwrite the input {out}: -o {out} is the input {same}; "
                            "choose another name")
        key = os.path.normcase(_key(job.output))
        parent, _, name = key.rpartition("/")
        if self.forget and parent not in self.seen:  # left every folder that is not above this one
            for done in [p for p in self.seen if not parent.startswith(p + "/")]:
                del self.seen[done]
        names = self.seen.setdefault(parent, {})
        if name in names:
            raise PlanError(f"{names[name]} and {job.name} would both be written to {storage.redact(job.output)}")
        names[name] = job.name

    def _input_at(self, out: str) -> str | None:
        """The input that ``out`` names (by path, or through a link), or None."""
        key = _key(out)
        if key in self.files:
            return storage.redact(self.files[key])
        local = not storage.is_url(out) or storage.is_local_url(out)
        path = (storage.local_path(out) if storage.is_url(out) else out) if local else None
        keys = {key, os.path.realpath(path)} if path is not None else {key}
        under = [(root, k) for root in self.roots for k in keys if k.startswith(root + "/")]
        if not under and not (local and self.file_ids):
            return None
        if not (os.path.exists(path) if path is not None else storage.exists(out, self.options.storage_options)):
            return None
        if path is not None and _file_id(path) in self.file_ids:
            return self.file_ids[_file_id(path)]
        for root, k in under:  # an existing file that the walk picks up
            parts = k[len(root) + 1:].split("/")
            if not any(p.startswith(".") for p in parts) and is_candidate(Path(parts[-1])) and \
                    (self.recursive or len(parts) == 1):
                return storage.redact(out)
        return None


def _is_file(output: str, options: Options) -> bool:
    if storage.is_url(output):
        return storage.isfile(output, options.storage_options)
    return Path(output).exists() and not Path(output).is_dir()


def _is_folder(output: str, options: Options) -> bool:
    if storage.is_url(output):
        if storage.is_zarr_url(output):
            return False  # a Zarr store is one output
        return output.endswith("/") or storage.isdir(output, options.storage_options)
    return (Path(output).is_dir() and not formats.is_zarr_path(output)) or output.endswith(("/", os.sep))


def _output_in(source: Source, folder: str, option: str, options: Options) -> str:
    """Where an input lands in a folder output: its path relative to its folder input, or its name."""
    if source.url is not None:
        if source.root_url is not None:
            relative = source.url[len(source.root_url.rstrip("/")) + 1:]
        else:
            relative = source.url.rstrip("/").rsplit("/", 1)[-1]
    elif source.path is None:
        raise PlanError(f"{option} is a folder: give a file name for standard input, or -o -")
    else:
        relative = (source.path.relative_to(source.root) if source.root else Path(source.path.name)).as_posix()
        if not storage.is_url(folder):
            is_array = source.path.suffix.lower() == ARRAY_EXTENSION
            return str(Path(folder) / Path(relative).with_suffix(output_extension(source.path.suffix, is_array,
                                                                                  options.file_format)))
    path = PurePosixPath(relative)
    renamed = str(path.with_suffix(output_extension(path.suffix, path.suffix.lower() == ARRAY_EXTENSION,
                                                    options.file_format)))
    return storage.join(folder, renamed) if storage.is_url(folder) else str(Path(folder) / renamed)


def _output_for(source: Source, output: str | None, params: PoolParams, options: Options, several: bool) -> str:
    if source.url is not None:
        if output is None:  # beside it, as for a file
            folder, _, name = source.url.rpartition("/")
            return f"{folder}/{default_output(Path(name), params, options.file_format).name}"
        return output
    if source.path is None:
        return output if output is not None else STDIO
    if output is None:
        if paths.is_pipe_like(str(source.path)):
            if several:
                raise PlanError(f"{source.label} is a stream (a pipe or a device): give -o for its output")
            return STDIO  # like '-': there is no folder to write beside
        return str(default_output(source.path, params, options.file_format))
    return output  # one input, -o names the file (or - for stdout)


def _key(path: str) -> str:
    """Paths as absolute paths; URLs in a canonical form (file:// as their path)."""
    return storage.key(path) if storage.is_url(path) else os.path.abspath(path)


def _real(path: str) -> str:
    """Paths through their links; URLs in a canonical form."""
    return storage.key(path) if storage.is_url(path) else os.path.realpath(path)


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return None
    return stat.st_dev, stat.st_ino


def _refuse_collisions(jobs: list[Job], options: Options) -> None:
    """No output may be an input or another output (by path, or the same file through a link),
    and no two inputs may share an output.  Linear in the number of files for folder runs."""
    input_paths = {_real(job.source): job.name for job in jobs if job.source != STDIO}
    input_ids = {_file_id(path): typed for path, typed in input_paths.items() if not storage.is_url(path)}
    input_ids.pop(None, None)
    seen: dict[str, str] = {}
    for job in jobs:
        written = [("-o", job.output)] + ([("--return-indices", options.indices_path)] if options.indices_path else [])
        for option, out in written:
            if out == STDIO:
                continue
            same = input_paths.get(_real(out)) or (None if storage.is_url(out) else input_ids.get(_file_id(out)))
            if same is not None:
                out = storage.redact(out)
                raise PlanError(f"refusing to overwrite the input {out}: {option} {out} is the input {same}; "
                                "choose another name")
        if len(written) == 2 and written[0][1] != STDIO and _same_file(written[0][1], written[1][1]):
            raise PlanError(f"--return-indices {written[1][1]} and -o {written[0][1]} are the same file: "
                            "choose another name for one of them")
        if job.output == STDIO:
            continue
        key = os.path.normcase(_real(job.output))  # through links: two names of one file
        if key in seen:
            raise PlanError(f"{seen[key]} and {job.name} would both be written to {storage.redact(job.output)}")
        seen[key] = job.name


def _same_file(a: str, b: str) -> bool:
    if storage.is_url(a) or storage.is_url(b):
        return _real(a) == _real(b)
    return paths.same_file(a, b)


def _report_module() -> ModuleType:
    from poolcli import report  # Rich: only when there is something to draw

    return report


def stderr_is_terminal() -> bool:
    """Rich's rule, without importing Rich: a TTY, or FORCE_COLOR set."""
    return sys.stderr.isatty() or bool(os.environ.get("FORCE_COLOR"))


def execute(jobs: list[Job] | JobStream, params: PoolParams, options: Options, executor: Executor | None = None, *,
            skip_existing: bool = False, progress: bool = True, as_json: bool = False, quiet: bool = False,
            verbose: bool = False, unwalked: int = 0) -> int:
    """Run every job on ``executor``, report as each finishes, and return the exit code (0, 1, or
    128 + a signal).

    The report is one line per input (``brief``), the full Rich report with ``verbose``, nothing
    with ``quiet`` or ``as_json``; a run that finishes ends it with the hint that ``unwalked``
    subfolders were left alone (no -r).  A failure is printed once, as ``poolcli: error: FILE: reason``.
    Temporary files that an earlier, killed run left for these outputs are removed first.

    ``executor`` (chosen by the caller; default: this process) runs several jobs; a single job
    always runs here, with the executor's strip runner for a giant image.  An executor that
    checks ``--skip-existing`` itself (a Dask cluster, on its workers) gets every job.
    """
    from poolcli.executors import InProcess

    executor = executor or InProcess()
    single = len(jobs) == 1
    wants_report = not quiet and not as_json
    show_bar = progress and not single and not quiet and stderr_is_terminal()
    # one job: bars of its strips (a giant image) or rows of tiles (a pyramid), drawn as they come
    work_bars = progress and single and not quiet and stderr_is_terminal()
    report = _report_module() if (wants_report and verbose) or show_bar or work_bars else None
    console = report.make_console() if report else None
    # several inputs never go to stdout (plan refuses it), and a stream is not walked again here
    image_to_stdout = single and any(job.output == STDIO for job in jobs)
    json_stream = sys.stderr if image_to_stdout else sys.stdout
    results: list[Result] | _Tally = _Tally() if isinstance(jobs, JobStream) else []
    started, started_wall = time.perf_counter(), time.time()
    if not isinstance(jobs, JobStream):  # (a stream is not walked again for this)
        paths.remove_temp_files(local_outputs(jobs, options), older_than=time.time())

    def on_result(result: Result) -> None:
        results.append(result)
        if as_json:
            print(json_line(result, params), file=json_stream, flush=True)
        if result.status == "error" and not (as_json and image_to_stdout):
            print(f"poolcli: error: {printable(result.input)}: {printable(result.error or '')}", file=sys.stderr,
                  flush=True)
        elif wants_report and verbose and report is not None:
            report.render(result, params, console)
        elif wants_report:
            for line in brief.result_lines(result, params):
                print(printable(line), file=sys.stderr, flush=True)

    delegated = executor.checks_existing and not single
    waiting: list[Job] = []
    for job in [] if delegated else jobs:
        if skip_existing and job.output != STDIO and _output_exists(job.output, options):
            on_result(Result(input=job.name, output=storage.redact(job.output), status="skipped",
                             error="output exists (--skip-existing)"))
        else:
            waiting.append(job)
    todo: list[Job] | JobStream = jobs if delegated else waiting
    interrupt: KeyboardInterrupt | None = None
    # Several files on this machine: outputs committed in groups, each folder synced once at the
    # end (paths.FolderRun); a cluster's workers may write on other machines: one at a time there.
    folder_run = paths.FolderRun() if not single and not executor.checks_existing else None
    held: list[Result] = []  # results waiting for their outputs' commit, in order
    try:
        bar = report.progress(console, len(jobs), len(jobs) - len(todo)) if show_bar and report else None
        with bar or contextlib.nullcontext(lambda: None) as advance, folder_run or contextlib.nullcontext():
            def report_results(results: list[Result], failed: dict[int, str]) -> None:
                for result in results:
                    if id(result) in failed:
                        result.status, result.error, result.output = "error", failed[id(result)], None
                    on_result(result)
                    advance()

            def report_held(wait: bool = False) -> None:
                """Commit what is held and report what is committed (all of it with ``wait``): the
                commits run behind the work (FolderRun.start_commit), results stay in order."""
                if folder_run is None:
                    report_results(held[:], {})
                else:
                    if held:
                        folder_run.start_commit(held[:])
                    for results, failed in folder_run.finished_commits(wait):
                        report_results(results, failed)
                held.clear()

            def finished(result: Result) -> None:
                held.append(result)
                if folder_run is not None and result.staged:
                    folder_run.add(result.staged, result)
                    result.staged = []
                if folder_run is None or not folder_run.pending or folder_run.due():
                    report_held()
                else:  # what earlier commits put in place is reported as soon as they finish
                    for results, failed in folder_run.finished_commits():
                        report_results(results, failed)

            try:
                if single:
                    for job in todo:
                        with (report.work_progress(console, "pyramid" if options.pyramid_levels else "pooling")
                              if work_bars and report else contextlib.nullcontext(None)) as step:
                            result = run(job, params, options, executor.strips, step)
                        finished(result)
                else:
                    executor.run(todo, params, options, finished, skip_existing=skip_existing)
            finally:  # interrupted too: the outputs written so far are whole, and go into place
                report_held(wait=True)
    except KeyboardInterrupt as stop:  # Ctrl-C, SIGTERM or SIGHUP (exits.Interrupted)
        interrupt = stop
        paths.remove_temp_files(local_outputs(jobs if not isinstance(jobs, JobStream) else [], options))
    except ExecutorError as error:  # the scheduler cannot be reached, or went away: one line, exit 1
        print(f"poolcli: error: {error}", file=sys.stderr, flush=True)
        return ExitCode.FAILED
    if not single and wants_report:
        print(brief.summary_line(results, time.perf_counter() - started), file=sys.stderr, flush=True)
    if unwalked and wants_report and interrupt is None:  # last, where it is seen
        print(brief.unwalked_line(unwalked), file=sys.stderr, flush=True)
    if interrupt is not None:
        to_files = any(job.output != STDIO for job in jobs)
        done = len(results)
        if executor.checks_existing and to_files:  # its workers commit outputs the client never heard of
            done = max(done, _written_since(jobs, options, started_wall))
        print(brief.interrupted_line(done, len(jobs), skip_existing, to_files,
                                     stopped=stop_message(interrupt)), file=sys.stderr, flush=True)
        return exit_code(interrupt)
    return ExitCode.FAILED if any(r.status == "error" for r in results) else ExitCode.OK


class _Tally:
    """The results of a streamed run, in memory that does not grow with the number of files:
    counts, and the failed ones in full (iterating gives those, then stand-ins for the rest)."""

    def __init__(self) -> None:
        self.counts = {"ok": 0, "skipped": 0}
        self.failed: list[Result] = []

    def append(self, result: Result) -> None:
        if result.status == "error":
            self.failed.append(result)
        else:
            self.counts[result.status] = self.counts.get(result.status, 0) + 1

    def __len__(self) -> int:
        return len(self.failed) + sum(self.counts.values())

    def __iter__(self) -> Iterator[Result]:
        yield from self.failed
        for status, count in self.counts.items():
            stand_in = Result(input="", status=status)
            for _ in range(count):
                yield stand_in


def _output_exists(output: str, options: Options) -> bool:
    if storage.is_url(output):
        return storage.exists(output, options.storage_options)
    return is_whole_output(output)


def _written_since(jobs: Iterable[Job], options: Options, since: float) -> int:
    """How many of the jobs' outputs are whole and were written since ``since`` (a time.time()):
    what a run stopped on a cluster did, whether or not each result reached the client."""
    count = 0
    for job in jobs:
        if job.output == STDIO or (storage.is_url(job.output) and not storage.is_local_url(job.output)):
            continue
        path = storage.local_path(job.output) if storage.is_url(job.output) else job.output
        with contextlib.suppress(OSError):
            if is_whole_output(path) and os.stat(path).st_mtime >= since:
                count += 1
    return count


def is_whole_output(path: str) -> bool:
    """Does --skip-existing count ``path`` as done: a non-empty regular file under its final name,
    or a Zarr store (renamed into place whole)?  Temporary ``.part`` files have other names; an
    empty file is what a crash can leave; a device or FIFO is never done."""
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return False
    return (S_ISREG(stat.st_mode) and stat.st_size > 0) or formats.is_zarr_path(path)
