"""The exit codes of every poolcli command, and how signals end a run (standard library only).

Ctrl-C (SIGINT), SIGTERM and SIGHUP all stop a run the same way: the first one raises
:class:`Interrupted` in the main thread, the run cleans up (workers stopped, temporary files
removed) and the process exits with 128 + the signal's number; any further signal while it cleans
up is ignored, so that a second or third Ctrl-C cannot break the cleanup into a hang or a
traceback.  The cleanup is bounded in time (workers that do not stop are killed).

>>> int(ExitCode.USAGE)
2
>>> exit_code(Interrupted(15))
143

May import: the standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from enum import IntEnum
from types import FrameType


class ExitCode(IntEnum):
    """What a poolcli process returns; documented in the README and ``poolcli --help``."""

    OK = 0  # every input was pooled
    FAILED = 1  # an input failed (unreadable, too small for the window, ...)
    USAGE = 2  # a bad option or combination, found before any file is read or written
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT); SIGTERM gives 143 and SIGHUP 129 (see exit_code)


# The signals that stop a run politely; SIGHUP does not exist on Windows.
STOP_SIGNALS = tuple(s for s in (getattr(signal, name, None) for name in ("SIGINT", "SIGTERM", "SIGHUP"))
                     if s is not None)


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; a KeyboardInterrupt, so every Ctrl-C path also handles SIGTERM/SIGHUP."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = int(signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def exit_code(interrupt: BaseException) -> int:
    """128 + the signal's number (the shells' convention): 130 for Ctrl-C, 143 SIGTERM, 129 SIGHUP."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


class _Handler:
    """The stop-signal handler: raise on the first signal, ignore the rest (the run is stopping)."""

    def __init__(self) -> None:
        self.stopping = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            return
        self.stopping = True
        raise Interrupted(signum)


@contextlib.contextmanager
def stop_signals_handled(restore: bool = True) -> Iterator[None]:
    """Handle SIGINT, SIGTERM and SIGHUP as described above, inside the block.

    Signals the caller ignores (``nohup``, a background job's SIGINT) stay ignored.  With
    ``restore=False`` the handler stays until the process ends, so that a signal during the
    interpreter's shutdown cannot print a traceback.  Nothing is changed outside the main thread,
    or when the handler is already in place.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    if any(isinstance(h, _Handler) for h in previous.values()):
        yield  # already handled, by the entry point
        return
    handler = _Handler()
    for signum, old in previous.items():
        if old is not signal.SIG_IGN:
            signal.signal(signum, handler)
    try:
        yield
    finally:
        if restore:
            for signum, old in previous.items():
                if old is not None:
                    signal.signal(signum, old)


def exit_quickly(code: object) -> None:
    """End the process with ``code`` at once, skipping the interpreter's teardown, which frees
    every module one by one: about 45 ms of a 230 ms run on a small image (measured).

    Returns instead, and leaves the exit to Python, wherever skipping could lose something: a
    ``code`` that is a message to print, a flush of standard output or error that fails (a closed
    pipe is reported as Python reports it), a Dask client with its own cleanup, or a thread other
    than poolcli's idle pools.
    """
    if not (code is None or isinstance(code, int)) or "distributed" in sys.modules:
        return
    current = threading.current_thread()
    if any(t.is_alive() and not t.daemon and t is not current and not t.name.startswith("poolcli")
           for t in threading.enumerate()):
        return
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except Exception:
        return
    os._exit(code or 0)


def stop_message(interrupt: BaseException) -> str:
    """``interrupted`` for Ctrl-C, ``stopped by SIGTERM`` for the others.

    >>> stop_message(Interrupted(1))
    'stopped by SIGHUP'
    """
    signum = getattr(interrupt, "signum", signal.SIGINT)
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"


# Where an internal error (a bug, never the user's input) should be reported.
REPORT_BUGS_AT = "the poolcli issue tracker, with the command and `poolcli --version`"


def internal_error(error: BaseException) -> str:
    """The one line for an exception that is a bug, not the user's fault.

    >>> internal_error(KeyError("x")).split(" — ")[0]
    "internal error: KeyError: 'x'"
    """
    return f"internal error: {type(error).__name__}: {error} — please report it at {REPORT_BUGS_AT}"
