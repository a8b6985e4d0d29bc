"""poolcli: torch-exact 2-D max and average pooling for NumPy arrays and image files.

The pooling functions are loaded on first use, so that ``poolcli --version`` and ``--help``
start without importing NumPy; ``import poolcli`` never imports Click, Rich or Pillow.

>>> import numpy as np
>>> from poolcli import max_pool2d
>>> max_pool2d(np.arange(9).reshape(3, 3), 2, 1).tolist()
[[4, 5], [7, 8]]

May import: nothing heavy at import time; NumPy (through the engine) on first use of a pooling function.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_ENGINE_NAMES = (
    "PoolingError",
    "PoolingTypeError",
    "avg_pool2d",
    "get_num_threads",
    "max_pool2d",
    "output_size",
    "set_num_threads",
)

__all__ = ["__version__", *_ENGINE_NAMES]


def __getattr__(name: str) -> Any:
    if name in _ENGINE_NAMES:
        from poolcli import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'poolcli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ENGINE_NAMES))
