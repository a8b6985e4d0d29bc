"""The exceptions poolcli raises for what users can cause, under one base.

Every error that is the user's (a bad file, a bad option combination, a storage fault, a cluster
that cannot be reached) derives from :class:`PoolcliError`; its ``str()`` is the one-line reason
shown after ``poolcli: error: NAME:``.  Anything else is a bug.

May import: the standard library only.

>>> issubclass(ExecutorError, PoolcliError)
True
"""

from __future__ import annotations


class PoolcliError(Exception):
    """Base of poolcli's own errors: a one-line reason the user can act on."""


class ExecutorError(PoolcliError):
    """The executor cannot run the work: a Dask scheduler that cannot be reached, a local cluster
    that does not start, or one that goes away mid-run (exit code 1, one line)."""
