"""Executors: who runs the jobs of a run, and the strips of one giant image.

The command line chooses the executor; :func:`poolcli.batch.execute` hands it the planned jobs
and never knows which it is.  Every executor runs the same :func:`poolcli.pipeline.run` per job:

- :class:`InProcess`: the jobs in turn, in this process;
- :class:`ForkPool`: worker processes forked from this one, one job at a time each, so that a
  stop is quick and the file of a worker that died is known (retried once);
- :class:`poolcli.cluster.DaskExecutor`: a Dask cluster (``--scheduler``), in its own module
  because it alone imports Dask.

An executor also carries the :class:`~poolcli.strips.StripRunner` that the strips of one giant
image run on: here, in this process; on a cluster, as Dask tasks.

May import: the pipeline (NumPy, Pillow) at import time; multiprocessing when a pool starts; no
Dask, Rich or Click.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from poolcli import paths, strips
from poolcli.exits import STOP_SIGNALS
from poolcli.params import PoolParams
from poolcli.pipeline import Job, Options, local_outputs, run
from poolcli.results import Result

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess


class Executor(Protocol):
    """Runs jobs and calls ``finished`` with each result as it arrives."""

    @property
    def strips(self) -> strips.StripRunner:
        """Where the strips of one giant image run."""
        ...

    @property
    def checks_existing(self) -> bool:
        """Does the executor check ``--skip-existing`` itself (on its workers)?"""
        ...

    def run(self, jobs: Iterable[Job], params: PoolParams, options: Options, finished: Callable[[Result], None],
            skip_existing: bool = False) -> None: ...


class InProcess:
    """The jobs in turn, in this process."""

    strips: strips.StripRunner = strips.LOCAL
    checks_existing = False

    def run(self, jobs: Iterable[Job], params: PoolParams, options: Options, finished: Callable[[Result], None],
            skip_existing: bool = False) -> None:
        for job in jobs:
            finished(run(job, params, options, self.strips))


class ForkPool:
    """Up to ``workers`` processes forked from this one (see :func:`run_parallel`)."""

    strips: strips.StripRunner = strips.LOCAL
    checks_existing = False

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def run(self, jobs: Iterable[Job], params: PoolParams, options: Options, finished: Callable[[Result], None],
            skip_existing: bool = False) -> None:
        todo = list(jobs)
        if min(self.workers, len(todo)) > 1:
            run_parallel(todo, params, options, min(self.workers, len(todo)), finished)
        else:
            InProcess().run(todo, params, options, finished)


# A stopping worker gets this long to remove its temporary file and exit before it is killed.
STOP_SECONDS = 5.0
# A file whose worker dies this many times is reported as failed (once is retried: the death may
# have been someone else's doing, such as the out-of-memory killer choosing a bigger neighbour).
WORKER_DEATHS = 2


@dataclass
class _Worker:
    """One worker process, its end of the pipe, and the job it has (one at a time)."""

    process: BaseProcess
    conn: Connection
    job: Job | None = None


class _Workers:
    """Worker processes forked from this one, each fed one job at a time through a pipe, so that
    the parent always knows which file a dead worker had (concurrent.futures does not say)."""

    def __init__(self, params: PoolParams, options: Options) -> None:
        from multiprocessing import get_context  # imported here: -j 1 and single files never pay for it

        # fork: the workers inherit the imported modules, so each is ready at once.
        self.context = get_context("fork")
        self.params, self.options = params, options
        self.all: list[_Worker] = []

    def start(self) -> _Worker:
        parent_end, child_end = self.context.Pipe()
        process = self.context.Process(target=_worker_main, args=(child_end, self.params, self.options, os.getpid()),
                                       daemon=True, name="poolcli-worker")
        # The stop signals wait until the child has its own handlers and the parent knows the child.
        blocked = _block(STOP_SIGNALS)
        try:
            process.start()
            worker = _Worker(process, parent_end)
            self.all.append(worker)
        finally:
            child_end.close()
            _block(blocked, signal.SIG_SETMASK)
        return worker

    def bury(self, worker: _Worker) -> None:
        worker.process.join()
        worker.conn.close()
        self.all.remove(worker)

    def close(self) -> None:
        """Tell every worker to finish, and wait for them."""
        for worker in self.all:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        self.stop(graceful=True)

    def stop(self, graceful: bool = False) -> None:
        """Stop every worker: SIGTERM (each removes its temporary file), then SIGKILL for those still
        running after STOP_SECONDS; then remove what a killed worker's job left."""
        from multiprocessing.connection import wait as wait_any

        try:
            if not graceful:
                for worker in self.all:
                    with contextlib.suppress(OSError):
                        worker.process.terminate()
            deadline = time.monotonic() + STOP_SECONDS
            alive = [w.process.sentinel for w in self.all if w.process.exitcode is None]
            while alive and time.monotonic() < deadline:
                wait_any(alive, timeout=deadline - time.monotonic())
                alive = [w.process.sentinel for w in self.all if w.process.exitcode is None]
        finally:
            for worker in list(self.all):
                if worker.process.exitcode is None:
                    with contextlib.suppress(OSError):
                        worker.process.kill()
                self.bury(worker)
                if worker.job is not None:
                    paths.remove_temp_files(local_outputs([worker.job], self.options))


def _block(signals: Iterable[int], how: int = signal.SIG_BLOCK) -> set[int]:
    if not hasattr(signal, "pthread_sigmask"):
        return set()
    return set(signal.pthread_sigmask(how, signals))


def _death(process: BaseProcess) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:  # a signal without a name (real-time)
            name = f"signal {-code}"
        return f"killed by {name}" + (", perhaps by the out-of-memory killer" if name == "SIGKILL" else "")
    return f"exit code {code}"


def run_parallel(jobs: list[Job], params: PoolParams, options: Options, workers: int,
                 finished: Callable[[Result], None]) -> None:
    """Jobs on worker processes, one at a time each, so that a stop is quick and a death is known.

    The file of a worker that dies (killed by the OS, say) is given once more to a fresh worker,
    and reported as failed only if that one dies too; the other files are not affected.
    """
    from multiprocessing.connection import wait as wait_any

    queue = deque(jobs)
    deaths: dict[Job, int] = {}
    pool = _Workers(params, options)
    try:
        while queue or any(w.job for w in pool.all):
            while len(pool.all) < workers and queue:
                try:
                    pool.start()
                except OSError:  # no process can be forked now: carry on with the workers there are
                    if pool.all:
                        break
                    raise
            for worker in pool.all:
                if worker.job is None and queue:
                    worker.job = queue.popleft()
                    try:
                        worker.conn.send(worker.job)
                    except OSError:  # it died before it could take the job: not the job's fault
                        queue.appendleft(worker.job)
                        worker.job = None
            ready = set(wait_any([w.conn for w in pool.all if w.job] + [w.process.sentinel for w in pool.all]))
            for worker in list(pool.all):
                if worker.conn in ready and worker.job is not None:
                    try:
                        result = worker.conn.recv()
                    except Exception:  # a half-sent result: the worker died
                        result = None
                    if result is not None:
                        worker.job = None
                        finished(result)
                        continue
                if worker.process.sentinel in ready or worker.conn in ready:
                    job = worker.job
                    worker.process.join(STOP_SECONDS)  # its pipe is closed: it is exiting
                    if worker.process.exitcode is None:
                        worker.process.kill()
                    pool.bury(worker)
                    if job is None:
                        continue
                    paths.remove_temp_files(local_outputs([job], options))
                    deaths[job] = deaths.get(job, 0) + 1
                    if deaths[job] < WORKER_DEATHS:
                        queue.appendleft(job)  # to the fresh worker started next round
                    else:
                        finished(Result(input=job.name, status="error",
                                        error=f"a worker process died {WORKER_DEATHS} times while pooling this "
                                              f"file ({_death(worker.process)})"))
    except BaseException:
        pool.stop()
        raise
    pool.close()


def _worker_main(conn: Connection, params: PoolParams, options: Options, parent: int) -> None:
    """A worker's life: its own signal handling, one engine thread (the processes share the cores),
    then jobs from the pipe until it is told to stop or its parent is gone."""
    for signum in STOP_SIGNALS:  # the parent decides when to stop, except by SIGTERM
        signal.signal(signum, _worker_stop if signum == signal.SIGTERM else signal.SIG_IGN)
    _block(STOP_SIGNALS, signal.SIG_UNBLOCK)
    _die_with_parent(parent)
    from poolcli import engine

    engine.set_num_threads(1)
    try:
        _serve(conn, params, options)
    finally:
        if os.getppid() != parent:  # the parent died: the outputs it was to commit never will be
            paths.discard_handed()


def _serve(conn: Connection, params: PoolParams, options: Options) -> None:
    """Jobs from the pipe, one at a time, until told to stop or the parent is gone."""
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            result = run(job, params, options)
        except BaseException:  # stopped: SIGTERM may come between a temporary file's creation and its cleanup
            paths.remove_temp_files(local_outputs([job], options))
            raise
        try:
            conn.send(result)
        except OSError:  # the parent is gone (a traceback here would only add lines to its terminal)
            return
        except Exception as error:  # a result that cannot be pickled: a reason instead, not a dead worker
            conn.send(Result(input=job.name, status="error", error=f"unexpected {type(error).__name__}: {error}"))


def _worker_stop(signum: int, frame: object) -> None:
    """SIGTERM in a worker: unwind (atomic_write removes its temporary file) and exit; if the
    unwinding hangs, SIGALRM's default action ends the process."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hasattr(signal, "alarm"):
        signal.alarm(int(STOP_SECONDS))
    raise SystemExit(128 + signum)


def _die_with_parent(parent: int) -> None:
    """Make this worker receive SIGTERM when its parent dies, even by SIGKILL: the kernel's
    parent-death signal on Linux (prctl), a watchdog thread elsewhere."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
        if armed:
            if os.getppid() != parent:  # the parent died before the signal was armed
                raise SystemExit(128 + signal.SIGTERM)
            return
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="poolcli-parent-watchdog", daemon=True).start()
