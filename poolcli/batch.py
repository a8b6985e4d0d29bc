"""Many inputs: where each output goes, and running the jobs (files in turn, or on worker
processes for folders), with per-file isolation: one bad file never stops the others.

May import: the pipeline (NumPy, Pillow) at import time; Rich only through report, when something is
drawn; no Click.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Future, wait
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from poolcli import formats, paths, streaming
from poolcli.engine import available_cpus
from poolcli.exits import ExitCode
from poolcli.params import PoolParams
from poolcli.pipeline import STDIO, Job, Options, run
from poolcli.results import Result, json_line

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

    from rich.console import Console

ARRAY_EXTENSION = ".npy"
ZARR_EXTENSION = ".zarr"  # Zarr stores are folders, but inputs: never walked


class PlanError(Exception):
    """A usage problem found before any file is read or written (exit code 2)."""


@dataclass(frozen=True)
class Source:
    """One input file and where it came from: a folder given on the command line (or None)."""

    path: Path | None  # None for stdin
    root: Path | None = None  # the folder it was found in, for mirrored output paths
    typed: str | None = None  # the path as typed: the folder given joined with the file's path in it

    @property
    def label(self) -> str:
        if self.path is None:
            return STDIO
        return self.typed or str(self.path)


def is_candidate(path: Path) -> bool:
    """Files a folder walk picks up: image extensions (any case) and .npy."""
    suffix = path.suffix.lower()
    return suffix in formats.READ_EXTENSIONS or suffix == ARRAY_EXTENSION


def walk(folder: str, recursive: bool) -> Iterator[str]:
    """Candidate files under ``folder`` in sorted order, as paths joined onto ``folder`` as given
    (``./photos`` gives ``./photos/a.png``); hidden files and folders are skipped.

    Symlinked folders are not followed, so a link loop cannot hang the walk; each real folder is
    visited once.
    """
    seen: set[tuple[int, int]] = set()

    def visit(directory: str) -> Iterator[str]:
        try:
            stat = os.stat(directory)
        except OSError:
            return
        key = (stat.st_dev, stat.st_ino)
        if key in seen:
            return
        seen.add(key)
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if streaming.is_zarr_path(entry.path):
                        yield entry.path
                    elif recursive:
                        yield from visit(entry.path)
                elif entry.is_file() and is_candidate(Path(entry.name)):
                    yield entry.path
            except OSError:
                continue

    yield from visit(folder)


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


def collect(inputs: list[str], recursive: bool) -> tuple[list[Source], bool]:
    """Expand the command line's inputs into files; also say whether any input was a folder."""
    sources: list[Source] = []
    any_folder = False
    for raw in inputs:
        if raw == STDIO:
            sources.append(Source(None))
            continue
        path = Path(raw)
        if path.is_dir() and not streaming.is_zarr_path(path):
            any_folder = True
            sources.extend(Source(Path(found), path, found) for found in walk(raw, recursive))
        else:
            sources.append(Source(path))  # a missing file is reported when it is processed
    return sources, any_folder


def plan(inputs: list[str], output: str | None, params: PoolParams, options: Options,
         recursive: bool = False, output_dir: str | None = None) -> list[Job]:
    """Decide every output path before anything is written, and refuse what would lose data.

    ``-o`` ending in ``/`` or naming an existing folder is a folder, also for one input;
    ``output_dir`` (``-O``) always is.  ``/dev/stdout`` is ``-``.

    Raises
    ------
    PlanError
        For usage problems: a folder without ``-o``, several inputs to one file or to stdout,
        an output that is an input, two outputs that are one file.
    """
    if output is not None and paths.is_stdout(output):
        output = STDIO
    sources, any_folder = collect(inputs, recursive)
    several = len(inputs) > 1 or any_folder
    if any_folder and output is None and output_dir is None:
        raise PlanError("-o/--output DIR is required when an input is a folder (or -O/--output-dir DIR)")
    if sum(s.path is None for s in sources) and several:
        raise PlanError("'-' (standard input) must be the only input")
    if output == STDIO and several:
        raise PlanError("-o - (standard output) takes a single input")
    if options.indices_path and several:
        raise PlanError("--return-indices takes a single input")
    if several and output is not None and Path(output).exists() and not Path(output).is_dir():
        raise PlanError(f"-o {output}: with several inputs, -o must be a folder, and this is a file")
    if output_dir is not None and Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise PlanError(f"-O {output_dir}: this is a file, not a folder")
    folder = output_dir
    if folder is None and output is not None and output != STDIO and (
            several or (Path(output).is_dir() and not streaming.is_zarr_path(output))
            or output.endswith(("/", os.sep))):
        folder = output

    jobs: list[Job] = []
    for source in sources:
        if folder is not None:
            option = f"-O {folder}" if output_dir is not None else f"-o {folder}"
            jobs.append(Job(source.label, _output_in(source, folder, option, options), source.label,
                            make_folders=True))
        else:
            jobs.append(Job(source.label, _output_for(source, output, params, options, several), source.label))
    _refuse_collisions(jobs, options)
    return jobs


def _output_in(source: Source, folder: str, option: str, options: Options) -> str:
    """Where an input lands in a folder output: its path relative to its folder input, or its name."""
    if source.path is None:
        raise PlanError(f"{option} is a folder: give a file name for standard input, or -o -")
    relative = source.path.relative_to(source.root) if source.root else Path(source.path.name)
    is_array = source.path.suffix.lower() == ARRAY_EXTENSION
    return str(Path(folder) / relative.with_suffix(output_extension(source.path.suffix, is_array,
                                                                    options.file_format)))


def _output_for(source: Source, output: str | None, params: PoolParams, options: Options, several: bool) -> str:
    if source.path is None:
        return output if output is not None else STDIO
    if output is None:
        if paths.is_pipe_like(str(source.path)):
            if several:
                raise PlanError(f"{source.label} is a stream (a pipe or a device): give -o for its output")
            return STDIO  # like '-': there is no folder to write beside
        return str(default_output(source.path, params, options.file_format))
    return output  # one input, -o names the file (or - for stdout)


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return None
    return stat.st_dev, stat.st_ino


def _refuse_collisions(jobs: list[Job], options: Options) -> None:
    """No output may be an input or another output (by path, or the same file through a link),
    and no two inputs may share an output.  Linear in the number of files for folder runs."""
    input_paths = {os.path.realpath(job.source): job.source for job in jobs if job.source != STDIO}
    input_ids = {_file_id(path): typed for path, typed in input_paths.items()}
    input_ids.pop(None, None)
    seen: dict[str, str] = {}
    for job in jobs:
        written = [("-o", job.output)] + ([("--return-indices", options.indices_path)] if options.indices_path else [])
        for option, out in written:
            if out == STDIO:
                continue
            same = input_paths.get(os.path.realpath(out)) or input_ids.get(_file_id(out))
            if same is not None:
                raise PlanError(f"refusing to overwrite the input {out}: {option} {out} is the input {same}; "
                                "choose another name")
        if len(written) == 2 and written[0][1] != STDIO and paths.same_file(written[0][1], written[1][1]):
            raise PlanError(f"--return-indices {written[1][1]} and -o {written[0][1]} are the same file: "
                            "choose another name for one of them")
        if job.output == STDIO:
            continue
        key = os.path.normcase(os.path.realpath(job.output))  # through links: two names of one file
        if key in seen:
            raise PlanError(f"{seen[key]} and {job.source} would both be written to {job.output}")
        seen[key] = job.source


def _report_module() -> ModuleType:
    from poolcli import report  # Rich: only when there is something to draw

    return report


def execute(jobs: list[Job], params: PoolParams, options: Options, *, jobs_n: int | None = None,
            skip_existing: bool = False, progress: bool = True, as_json: bool = False, quiet: bool = False) -> int:
    """Run every job, report as each finishes, and return the exit code (0, 1, or 130)."""
    single = len(jobs) == 1
    wants_rich = not quiet and not as_json
    report = _report_module() if wants_rich or (progress and not single) else None
    console = report.make_console() if report else None
    image_to_stdout = any(job.output == STDIO for job in jobs)
    json_stream = sys.stderr if image_to_stdout else sys.stdout
    results: list[Result] = []
    started = time.perf_counter()

    def on_result(result: Result) -> None:
        results.append(result)
        if as_json:
            print(json_line(result, params), file=json_stream, flush=True)
        if result.status == "error" and not (as_json and image_to_stdout):
            print(f"poolcli: error: {result.input}: {result.error}", file=sys.stderr, flush=True)
        if single and wants_rich and report is not None and result.status != "error":
            report.render(result, params, console)

    todo = []
    for job in jobs:
        if skip_existing and job.output != STDIO and os.path.exists(job.output) and not paths.is_stream(job.output):
            on_result(Result(input=job.name, output=job.output, status="skipped",
                             error="output exists (--skip-existing)"))
        else:
            todo.append(job)
    workers = min(jobs_n or available_cpus(), len(todo))
    show_bar = progress and not single and console is not None and console.is_terminal and not quiet
    interrupted = False
    try:
        with _progress(console, show_bar, len(jobs), len(jobs) - len(todo)) as advance:
            def finished(result: Result) -> None:
                on_result(result)
                advance()

            if workers > 1:
                _run_parallel(todo, params, options, workers, finished)
            else:
                for job in todo:
                    finished(run(job, params, options))
    except KeyboardInterrupt:
        interrupted = True
        _remove_partial_files(jobs)
    if not single and wants_rich and report is not None:
        report.render_summary(results, time.perf_counter() - started, console)
    if interrupted:
        print(f"poolcli: interrupted after {len(results)} of {len(jobs)} inputs", file=sys.stderr, flush=True)
        return ExitCode.INTERRUPTED
    return ExitCode.FAILED if any(r.status == "error" for r in results) else ExitCode.OK


@contextlib.contextmanager
def _progress(console: Console | None, show: bool, total: int, done: int) -> Iterator[Callable[[], None]]:
    if not show:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("pooling"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("pool", total=total, completed=done, rate="")
        t0 = time.perf_counter()
        count = [0]

        def advance() -> None:
            count[0] += 1
            rate = count[0] / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, advance=1, rate=f"{rate:.1f} files/s")

        yield advance


def _worker_init() -> None:
    """Worker set-up, once per process: one engine thread (the processes share the cores), and
    a polite exit on SIGTERM so that a half-written temporary file is removed (atomic_write)."""
    from poolcli import engine

    engine.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(1)

    signal.signal(signal.SIGTERM, stop)


def _run_parallel(jobs: list[Job], params: PoolParams, options: Options, workers: int,
                  finished: Callable[[Result], None]) -> None:
    """Jobs on worker processes, at most two queued per worker so that Ctrl-C stops quickly.

    A worker that dies (killed by the OS, say) fails the file it had; the pool is started again
    for the files after it.
    """
    queue = iter(jobs)
    pending: dict[Future, Job] = {}
    executor = _start_workers(workers)
    try:
        while True:
            while len(pending) < 2 * workers:
                job = next(queue, None)
                if job is None:
                    break
                try:
                    pending[executor.submit(run, job, params, options)] = job
                except BrokenExecutor:
                    executor.shutdown(wait=True, cancel_futures=True)
                    executor = _start_workers(workers)
                    pending[executor.submit(run, job, params, options)] = job
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                try:
                    result = future.result()
                except Exception as error:  # the worker died while on this file
                    result = Result(input=job.name, status="error",
                                    error=f"worker process failed: {error or type(error).__name__}")
                finished(result)
    except BaseException:
        for future in pending:
            future.cancel()
        for process in list(getattr(executor, "_processes", {}).values()):
            with contextlib.suppress(Exception):
                process.terminate()  # SIGTERM: the worker removes its temporary file and exits
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def _start_workers(workers: int) -> ProcessPoolExecutor:
    # Imported here: single-file and -j 1 runs never pay for multiprocessing's import.
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    # fork: the workers inherit the imported modules, so each is ready at once.
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork"), initializer=_worker_init)


def _remove_partial_files(jobs: list[Job]) -> None:
    """Remove temporary files left by interrupted writes (:func:`poolcli.paths.temp_files`)."""
    for job in jobs:
        if job.output == STDIO:
            continue
        for leftover in paths.temp_files(job.output):
            with contextlib.suppress(OSError):
                os.unlink(leftover)
