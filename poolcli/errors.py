"""The exceptions poolcli raises for what users can cause, under one base.

Every error that is the user's (a bad file, a bad option combination, a storage fault, a cluster
that cannot be reached) derives from :class:`PoolcliError`; its ``str()`` is the one-line reason
shown after ``poolcli: error: NAME:``.  Anything else is a bug.

The public ones live here and are exported by ``poolcli`` too: :class:`PoolcliError`,
:class:`PoolError` (the image functions), :class:`PoolingError` and :class:`PoolingTypeError` (the
array functions, with torch's messages), :class:`ExecutorError` (a cluster).  The modules' own
errors (``pipeline.JobError``, ``images.ImageError``, ``arrays.ArrayError``,
``storage.StorageError``, :class:`GiantImageError`, ``batch.PlanError``, ``paths.OutputError``, ...)
derive from :class:`PoolcliError` as well, keeping their standard bases (``ValueError``,
``OSError``) beside it, so ``except poolcli.PoolcliError`` catches everything poolcli refuses.

May import: the standard library only.

>>> issubclass(ExecutorError, PoolcliError)
True
>>> issubclass(PoolingError, PoolcliError) and issubclass(PoolingError, ValueError)
True
"""

from __future__ import annotations


class PoolcliError(Exception):
    """Base of poolcli's own errors: a one-line reason the user can act on."""


class PoolError(PoolcliError, ValueError):
    """An image that cannot be pooled as asked (unreadable, window too large, ...), raised by
    :func:`poolcli.pool_image` and :func:`poolcli.pool_file`: the command line's reason, with the
    path and the keyword arguments' names (``kernel_size``, ``ceil_mode``) instead of its flags."""


class PoolingError(PoolcliError, ValueError):
    """Arguments or input that torch would refuse with a ``RuntimeError`` or ``IndexError``.

    The message is torch's own text (docs/semantics.md §2 and its error table).

    Examples
    --------
    >>> import numpy as np
    >>> from poolcli import max_pool2d
    >>> try:
    ...     max_pool2d(np.zeros((1, 4, 4)), 5)
    ... except PoolingError as error:
    ...     print(error)
    Given input size: (1x4x4). Calculated output size: (1x0x0). Output size is too small
    """


class PoolingTypeError(PoolcliError, TypeError):
    """An argument of the wrong type, or a dtype torch does not implement (its ``TypeError`` and
    ``NotImplementedError``, docs/semantics.md §2 step 1 and §5), with torch's message.

    Examples
    --------
    >>> import numpy as np
    >>> from poolcli import avg_pool2d
    >>> try:
    ...     avg_pool2d(np.zeros((1, 2, 2), dtype=bool), 2)
    ... except PoolingTypeError as error:
    ...     print(error)
    "avg_pool2d" not implemented for 'Bool'
    """


class ExecutorError(PoolcliError):
    """The executor cannot run the work: a Dask scheduler that cannot be reached, a local cluster
    that does not start, or one that goes away mid-run (exit code 1, one line)."""


class GiantImageError(PoolcliError):
    """A giant-image (TIFF, Zarr, pyramid) input or output that cannot be handled, with a one-line
    reason."""
