"""The exit codes of every poolcli command, in one place (no dependencies).

>>> int(ExitCode.USAGE)
2

May import: the standard library only.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a poolcli process returns; documented in the README and ``poolcli --help``."""

    OK = 0  # every input was pooled
    FAILED = 1  # an input failed (unreadable, too small for the window, ...)
    USAGE = 2  # a bad option or combination, found before any file is read or written
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


# Where an internal error (a bug, never the user's input) should be reported.
REPORT_BUGS_AT = "the poolcli issue tracker, with the command and `poolcli --version`"


def internal_error(error: BaseException) -> str:
    """The one line for an exception that is a bug, not the user's fault.

    >>> internal_error(KeyError("x")).split(" — ")[0]
    "internal error: KeyError: 'x'"
    """
    return f"internal error: {type(error).__name__}: {error} — please report it at {REPORT_BUGS_AT}"
