"""The exit codes of every poolcli command, in one place (no dependencies).

>>> int(ExitCode.USAGE)
2
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a poolcli process returns; documented in the README and ``poolcli --help``."""

    OK = 0  # every input was pooled
    FAILED = 1  # an input failed (unreadable, too small for the window, ...)
    USAGE = 2  # a bad option or combination, found before any file is read or written
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
