"""The Dask executor: ``--scheduler tcp://host:8786`` or ``--scheduler local``.

:class:`DaskExecutor` is an :class:`poolcli.executors.Executor`: each file is one task that runs
the same :func:`poolcli.pipeline.run` as the local worker pool, and the strips of one giant image
are tasks too (:class:`DaskRunner`): each worker reads its input rows (with halo) and writes its
output chunks straight to the store, local or remote.  Tasks carry paths and URLs, never
pixels; workers read and write storage themselves.  The client submits a bounded window of
tasks at a time (``as_completed``), so its memory does not depend on how many files are queued,
and reports each result as it arrives.

Faults are Dask's business: a task whose worker dies is run again elsewhere; one that kills
``--retries + 1`` workers (the scheduler's ``allowed-failures``) ends as that file's error.
Nothing here is imported unless a scheduler is used.

May import: the pipeline (NumPy, Pillow), ``paths`` and ``storage`` at import time; dask and
distributed only inside the functions that connect and submit; no Rich, no Click, and nothing
above it (``batch`` and the command line choose it, it never calls them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from poolcli import paths, storage
from poolcli.errors import ExecutorError
from poolcli.params import PoolParams
from poolcli.pipeline import Job, Options, local_outputs, run
from poolcli.results import Result

CONNECT_TIMEOUT = 10  # seconds: an unreachable scheduler is an error after this long
INSTALL_HINT = 'pip install "poolcli[dask]"'
LOCAL = "local"
_CONFIG_KEYS = ("scheduler-address", "scheduler_address")
T = TypeVar("T")


def installed() -> bool:
    """Is the ``poolcli[dask]`` extra (dask.distributed) installed?"""
    _quiet_logs()  # before distributed's first import, which sets its loggers up
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def default_address() -> str | None:
    """Dask's own setting of the scheduler: ``DASK_SCHEDULER_ADDRESS``, or ``scheduler-address`` in
    a Dask configuration file.  Dask is imported only if a configuration file mentions the key,
    so that runs without a cluster stay as fast as before."""
    address = os.environ.get("DASK_SCHEDULER_ADDRESS", "").strip()
    if address:
        return address
    if not any(_mentions_address(path) for path in _config_files()):
        return None
    try:
        import dask.config
    except ImportError:
        return None
    value = dask.config.get("scheduler-address", None)
    return str(value) if value else None


def _config_files() -> Iterable[str]:
    folders = [os.environ.get("DASK_ROOT_CONFIG", "/etc/dask"), os.path.join(sys.prefix, "etc", "dask"),
               os.path.join(os.path.expanduser("~"), ".config", "dask"), os.environ.get("DASK_CONFIG", "")]
    for folder in folders:
        if folder and os.path.isdir(folder):
            for pattern in ("*.yaml", "*.yml", "*.json"):
                yield from glob.glob(os.path.join(folder, pattern))


def _mentions_address(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return False
    return any(key in text for key in _CONFIG_KEYS)


# --------------------------------------------------------------------------- on the workers

_WORKER_READY = False


def dask_setup(worker: Any = None) -> None:
    """Preloaded into each worker process of a LocalCluster started here (forked, so it would
    inherit poolcli's handlers): stop signals are the client's business, and a worker that gets
    one ends without a traceback; the client stops the cluster and removes what it left."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", signal.SIGTERM)):
            signal.signal(signum, signal.SIG_DFL)


def pool_one(job: Job, params: PoolParams, options: Options, skip_existing: bool = False) -> Result:
    """The task: one file, start to finish, on a worker (one engine thread: Dask runs the tasks
    in parallel).  ``--skip-existing`` is checked here, in parallel, not by the client."""
    global _WORKER_READY
    if not _WORKER_READY:
        from poolcli import engine

        engine.set_num_threads(1)
        _WORKER_READY = True
    if skip_existing and _exists(job.output, options):
        return Result(input=job.name, output=storage.redact(job.output), status="skipped",
                      error="output exists (--skip-existing)")
    return run(job, params, options)


def _exists(output: str, options: Options) -> bool:
    if storage.is_url(output):
        return storage.exists(output, options.storage_options)
    return os.path.exists(output)


# --------------------------------------------------------------------------- on the client


def _quiet_logs() -> None:
    """Dask's own log lines (worker restarts, closing connections) would break poolcli's one
    line per problem; the results say what happened."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "critical")
    for name in ("distributed", "distributed.client", "distributed.scheduler", "distributed.worker",
                 "distributed.nanny", "distributed.core", "distributed.comm"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # Connections closed under a pending read at Ctrl-C are logged by tornado with a traceback.
    logging.getLogger("tornado.application").setLevel(logging.CRITICAL)


def connect(address: str, workers: int | None, retries: int) -> tuple[Any, Any]:
    """A Client, and the LocalCluster it owns for ``address == "local"`` (else None).

    Raises
    ------
    ExecutorError
        When the scheduler cannot be reached within CONNECT_TIMEOUT seconds, or the local
        cluster cannot start.
    """
    _quiet_logs()
    try:
        import dask
        from distributed import Client
    except ImportError:
        raise ExecutorError(f"--scheduler needs Dask: {INSTALL_HINT}") from None
    shown = storage.redact(address)
    # The scheduler gives up on a task after it killed this many workers (KilledWorker).
    with dask.config.set({"distributed.scheduler.allowed-failures": retries}):
        if address == LOCAL:
            return _start_local(workers)
        try:
            return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False), None
        except (OSError, TimeoutError) as error:
            raise ExecutorError(f"{shown}: cannot reach the Dask scheduler "
                               f"({storage.redact(str(error)) or type(error).__name__})") from None
        except (ValueError, TypeError) as error:
            raise ExecutorError(f"{shown}: not a scheduler address ({error})") from None


def _start_local(workers: int | None) -> tuple[Any, Any]:
    """A LocalCluster of single-threaded worker processes, and its Client.

    On Linux the workers are forked (also when the nanny restarts one): they start in a tenth of
    the time of spawned ones and inherit the modules already imported.  They ignore SIGINT, so
    that Ctrl-C in a terminal reaches only this process, which stops them itself.
    """
    import dask
    from distributed import Client, LocalCluster

    from poolcli.engine import available_cpus

    # This process owns the cluster: its settings are ours.  The workers' statistical profiler and
    # work stealing cost CPU that the pooling needs (measured: ~7% of a 2-core run).
    dask.config.set({"distributed.worker.profile.enabled": False, "distributed.scheduler.work-stealing": False,
                     "distributed.worker.preload": ["poolcli.cluster"]})  # dask_setup: the workers' signals
    if sys.platform.startswith("linux"):
        dask.config.set({"distributed.worker.multiprocessing-method": "fork"})
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main_thread else None
    try:
        cluster = LocalCluster(n_workers=workers or available_cpus(), threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=logging.ERROR)
    except Exception as error:
        raise ExecutorError(f"local: the Dask cluster did not start ({error})") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return Client(cluster), cluster


FILES_PER_TASK = 4  # small files share a task: fewer scheduler round trips (measured ~10 ms each on 2 cores)


def pool_files(task: Callable[..., Result], jobs: list[Job], params: PoolParams, options: Options,
               skip_existing: bool = False, started: float | None = None) -> list[Result]:
    """The task for several files: ``task`` (:func:`pool_one`) on each in turn, their results in
    order; first the temporaries that a killed earlier run (one older than ``started``) left for
    these outputs are removed, here on the worker, as the client does for a local run."""
    if started is not None:
        paths.remove_temp_files(local_outputs(jobs, options), older_than=started)
    return [task(job, params, options, skip_existing) for job in jobs]


def run_on_cluster(jobs: Iterable[Job], params: PoolParams, options: Options, address: str, workers: int | None,
                   retries: int, finished: Callable[[Result], None], *, skip_existing: bool = False,
                   task: Callable[..., Result] = pool_one) -> None:
    """Run the jobs as Dask tasks and call ``finished`` with each result as it arrives.

    At most ``window`` tasks are in the scheduler at a time, and ``jobs`` is read only as fast
    as they finish.  Up to FILES_PER_TASK files share a task while many are queued; near the end
    of the queue each file has its own task again, so that no worker idles while another finishes
    a batch.  A batch whose worker died, or which failed in Dask, is run again one file per task:
    each file then gets its own outcome.  On Ctrl-C (or any error) the futures are cancelled; a
    cluster started here is closed, then the temporary files of the tasks it stopped are removed.
    """
    import time
    from collections import deque
    from uuid import uuid4

    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    started = time.time()
    client, cluster = connect(address, workers, retries)
    done = [0]  # results handed on: what a lost scheduler's message counts

    def report(result: Result) -> None:
        done[0] += 1
        finished(result)

    pending: dict[Any, list[Job]] = {}
    completed = None
    prefix = getattr(task, "__name__", "pool_one")  # the task prefix on the dashboard names the per-file work

    def submit_one(files: list[Job]) -> Any:
        future = client.submit(pool_files, task, [_absolute(job) for job in files], params, options, skip_existing,
                               started, key=f"{prefix}-{uuid4().hex}", retries=retries)
        pending[future] = files
        return future

    try:
        threads = sum(client.nthreads().values()) or 1
        window = max(64, 4 * threads)
        queue = iter(jobs)
        ahead: deque[Job] = deque()  # a bounded look-ahead: how many files are left decides the batch size
        completed = as_completed(with_results=True, raise_errors=False, loop=client.loop)

        def submit(count: int) -> None:
            for _ in range(count):
                while len(ahead) < 2 * threads * FILES_PER_TASK:
                    job = next(queue, None)
                    if job is None:
                        break
                    ahead.append(job)
                if not ahead:
                    return
                size = max(1, min(FILES_PER_TASK, len(ahead) // (2 * threads)))
                completed.add(submit_one([ahead.popleft() for _ in range(size)]))

        submit(window)
        suspects: list[Job] = []  # their workers died: perhaps their fault, perhaps a neighbour's
        for future, outcome in completed:
            files = pending.pop(future)
            _check_connected(client, outcome, address, done=done)
            if isinstance(outcome, list) and len(outcome) == len(files):
                for job, one in zip(files, outcome, strict=True):
                    report(_result(job, one, KilledWorker, final=False))  # type: ignore[arg-type]
            elif len(files) > 1:  # the batch failed as a whole: each file on its own, below
                suspects.extend(files)
            else:
                result = _result(files[0], outcome, KilledWorker, final=False)
                if result is None:
                    suspects.extend(files)
                else:
                    report(result)
            submit(1)
        # Alone on the cluster, a file that kills workers is found out, and a neighbour is not blamed.
        for job in suspects:
            future = submit_one([job])
            try:  # (future.result, not distributed.wait: that needs a default client)
                outcome = future.result(timeout=None if _connected(client) else 0)[0]
            except Exception as error:  # the task's error, KilledWorker, or a lost scheduler
                outcome = error
            _check_connected(client, outcome, address, done=done)
            pending.pop(future)
            report(_result(job, outcome, KilledWorker, final=True))  # type: ignore[arg-type]
    except BaseException as error:
        stopped = [job for files in pending.values() for job in files]
        with contextlib.suppress(Exception):  # the cluster may already be gone; stopping matters more
            if completed is not None:
                completed.clear()  # no more results wanted: stops its gathering before the close
            client.cancel(list(pending))
        pending.clear()
        _close(client, cluster)
        if cluster is not None:  # its workers are gone: what they were writing is not whole
            paths.remove_temp_files(local_outputs(stopped, options))
        if isinstance(error, ExecutorError):
            raise
        if isinstance(error, Exception):  # Dask's own failure (a lost scheduler, say): one line
            detail = storage.redact(str(error)) or type(error).__name__
            raise ExecutorError(f"{storage.redact(address)}: the Dask cluster failed ({detail})") from None
        raise
    _close(client, cluster)


def _connected(client: Any) -> bool:
    return getattr(client, "status", "running") in ("running", "connecting", "newly-created")


def _check_connected(client: Any, outcome: Any, address: str, done: list[int]) -> None:
    """A scheduler that went away ends the run with one line (not one per file, and never a wait
    for results that cannot come); the outputs already written are whole (each was committed by
    its worker), so ``--skip-existing`` resumes."""
    if isinstance(outcome, tuple) and len(outcome) == 3 and isinstance(outcome[1], BaseException):
        outcome = outcome[1]
    lost = isinstance(outcome, BaseException) and (
        "connection-lost" in str(outcome) or ("cancelled" in str(outcome).lower() and not _connected(client)))
    if lost or not _connected(client):
        raise ExecutorError(f"{storage.redact(address)}: lost the Dask scheduler after {done[0]} results; the "
                            "outputs already written are whole: run again with --skip-existing to finish")


def _result(job: Job, outcome: Any, killed: type[Exception], final: bool) -> Result | None:
    """A task's outcome as the file's Result; None for a first KilledWorker (to be run alone)."""
    if isinstance(outcome, tuple) and len(outcome) == 3 and isinstance(outcome[1], BaseException):
        outcome = outcome[1]  # as_completed gives an error as (type, value, traceback)
    if isinstance(outcome, Result):
        if outcome.output is not None:
            outcome.output = storage.redact(job.output)  # as planned, not as the worker saw it
        return outcome
    if isinstance(outcome, killed):
        if not final:
            return None
        return Result(input=job.name, status="error",
                      error="it killed the Dask workers that pooled it, more often than the scheduler allows "
                            "(KilledWorker; see distributed.scheduler.allowed-failures)")
    message = storage.redact(str(outcome)) or type(outcome).__name__
    return Result(input=job.name, status="error", error=f"failed on the Dask cluster: {message}")


def _absolute(job: Job) -> Job:
    """Workers run in another folder (or on another machine, with a shared file system)."""

    def absolute(path: str) -> str:
        return path if path == "-" or storage.is_url(path) else os.path.abspath(path)

    return dataclasses.replace(job, source=absolute(job.source), output=absolute(job.output), label=job.name)


def _close(client: Any, cluster: Any) -> None:
    with contextlib.suppress(Exception):
        client.close()
    if cluster is not None:
        with contextlib.suppress(Exception):
            cluster.close()


# --------------------------------------------------------------------------- the executor


class DaskRunner:
    """The strips of one giant image as Dask tasks (a :class:`poolcli.strips.StripRunner`).

    A task carries the locations of the input and output, never pixels: it opens them on the
    worker, reads its input rows, and writes its output chunks itself (no two tasks share a
    chunk).  Results come back in order; at most ``window`` tasks are queued at a time, so the
    client's memory does not grow with the image.
    """

    def __init__(self, executor: DaskExecutor) -> None:
        self.executor = executor

    def map(self, task: Callable[[int, int], T], ranges: Sequence[tuple[int, int]]) -> Iterator[T]:
        from collections import deque
        from uuid import uuid4

        client = self.executor.client()
        window = max(8, 4 * (sum(client.nthreads().values()) or 1))
        queued: deque[Any] = deque()
        todo = iter(ranges)
        stopped: BaseException | None = None
        try:
            while True:
                for o0, o1 in todo:
                    queued.append(client.submit(run_strip, task, o0, o1, key=f"pool_strip-{uuid4().hex}",
                                                retries=self.executor.retries))
                    if len(queued) >= window:
                        break
                if not queued:
                    return
                future = queued.popleft()
                try:  # (future.result, not distributed.wait: that needs a default client)
                    value = future.result()
                except Exception as error:
                    raise _strip_failure(error, self.executor.address) from None
                yield value
        except BaseException as error:
            stopped = error
            with contextlib.suppress(Exception):
                client.cancel(list(queued))
            if isinstance(error, Exception) and not isinstance(error, ExecutorError) and _is_cluster_fault(error):
                raise ExecutorError(f"{storage.redact(self.executor.address)}: the Dask cluster failed "
                                    f"({storage.redact(str(error)) or type(error).__name__})") from None
            raise
        finally:  # what the task's copies keep open on the workers for its next strips
            forget = getattr(task, "forget", None)
            if callable(forget) and not isinstance(stopped, KeyboardInterrupt) and _connected(client):
                with contextlib.suppress(Exception):  # a worker may be gone: its files went with it
                    client.run(forget)


def run_strip(task: Callable[[int, int], T], o0: int, o1: int) -> T:
    """The Dask task of one strip: ``task(o0, o1)`` on a worker, then the task's copy closes what
    it opened (its ``close``, if it has one).  Each task gets a copy of its own, which the worker
    keeps until the client has taken the result: with its reader and the band of input rows that
    reader holds (a chunk row of the whole width), a worker held several bands at once.  (A task
    that keeps its input open for its next strips says so with ``forget``, which
    :meth:`DaskRunner.map` runs on every worker at the end.)"""
    try:
        return task(o0, o1)
    finally:
        close = getattr(task, "close", None)
        if callable(close):
            close()


def _strip_failure(error: Exception, address: str) -> Exception:
    """A strip task's failure: the task's own error (a damaged chunk, a storage fault) as it is,
    or the cluster's (a lost worker or scheduler, a cancelled task) as one line."""
    if not _is_cluster_fault(error):
        return error
    detail = storage.redact(str(error)) or type(error).__name__
    return ExecutorError(f"{storage.redact(address)}: a strip failed on the Dask cluster ({detail})")


def _is_cluster_fault(error: BaseException) -> bool:
    return type(error).__module__.split(".")[0] in ("distributed", "dask", "tornado") or \
        (isinstance(error, (OSError, TimeoutError)) and "comm" in type(error).__module__)


class DaskExecutor:
    """Jobs and strips on a Dask cluster: an address, or ``local`` (a LocalCluster of ``workers``
    processes started here and closed at the end).  Connects on first use."""

    checks_existing = True

    def __init__(self, address: str, workers: int | None = None, retries: int = 2) -> None:
        self.address, self.workers, self.retries = address, workers, retries
        self.strips = DaskRunner(self)
        self._client: Any = None
        self._cluster: Any = None

    def client(self) -> Any:
        if self._client is None:
            self._client, self._cluster = connect(self.address, self.workers, self.retries)
        return self._client

    def run(self, jobs: Iterable[Job], params: PoolParams, options: Options, finished: Callable[[Result], None],
            skip_existing: bool = False) -> None:
        run_on_cluster(jobs, params, options, self.address, self.workers, self.retries, finished,
                       skip_existing=skip_existing)

    def close(self) -> None:
        if self._client is not None:
            _close(self._client, self._cluster)
            self._client = self._cluster = None
