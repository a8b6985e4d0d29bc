"""poolcli: torch-exact 2-D max and average pooling for NumPy arrays and image files.

Arrays: :func:`max_pool2d`, :func:`avg_pool2d`, :func:`output_size` (torch's functions).
Images: :func:`pool_image` (a path or PIL image in, a PIL image out) and :func:`pool_file`,
through the same code as the command line.  Errors: every exception poolcli raises for bad input
derives from :class:`PoolcliError` (:mod:`poolcli.errors`); the API's own are :class:`PoolError`
(images), :class:`PoolingError` and :class:`PoolingTypeError` (arrays, torch's messages).

The pooling functions are loaded on first use, so that ``poolcli --version`` and ``--help``
start without importing NumPy; ``import poolcli`` never imports Click, Rich or Pillow.

>>> import numpy as np
>>> from poolcli import max_pool2d
>>> max_pool2d(np.arange(9).reshape(3, 3), 2, 1).tolist()
[[4, 5], [7, 8]]

May import: nothing heavy at import time; NumPy (through the engine) on first use of a pooling function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# The exceptions are light (the standard library only), so they are here from the start.
from poolcli.errors import ExecutorError as ExecutorError
from poolcli.errors import PoolcliError as PoolcliError
from poolcli.errors import PoolError as PoolError
from poolcli.errors import PoolingError as PoolingError
from poolcli.errors import PoolingTypeError as PoolingTypeError
from poolcli.version import __version__ as __version__

if TYPE_CHECKING:  # the real signatures for type checkers; at run time __getattr__ loads them on first use
    from poolcli.api import avg_pool2d as avg_pool2d
    from poolcli.api import max_pool2d as max_pool2d
    from poolcli.api import pool_file as pool_file
    from poolcli.api import pool_image as pool_image
    from poolcli.engine import get_num_threads as get_num_threads
    from poolcli.engine import output_size as output_size
    from poolcli.engine import set_num_threads as set_num_threads

_ENGINE_NAMES = (
    "get_num_threads",
    "output_size",
    "set_num_threads",
)
# Images in and out (Pillow, loaded on first use): poolcli.api.
# The array functions too: torch's, with a layout= for images whose channels come last.
_API_NAMES = ("avg_pool2d", "max_pool2d", "pool_file", "pool_image")
_ERROR_NAMES = ("ExecutorError", "PoolError", "PoolcliError", "PoolingError", "PoolingTypeError")

__all__ = ["__version__", *_ERROR_NAMES, *_ENGINE_NAMES, *_API_NAMES]


if not TYPE_CHECKING:  # hidden from type checkers, which would make every unknown name Any

    def __getattr__(name: str) -> Any:
        if name in _ENGINE_NAMES:
            from poolcli import engine

            return getattr(engine, name)
        if name in _API_NAMES:
            from poolcli import api

            return getattr(api, name)
        raise AttributeError(f"module 'poolcli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ENGINE_NAMES) | set(_API_NAMES))
