"""One frame of pixels, in memory or still inside a decoder: the type pooling reads.

May import: NumPy, ``engine`` and the standard library (no Pillow): ``pixels`` pools any
:class:`Frame` without knowing where its rows come from; ``images`` adds a frame that reads from
Pillow.

>>> import numpy as np
>>> frame = ArrayFrame(np.arange(12, dtype=np.uint8).reshape(2, 3, 2))
>>> frame.shape, frame.rows(1, 2).tolist(), frame.value_range(), frame.planes().shape
((2, 3, 2), [[[6, 7], [8, 9], [10, 11]]], (0, 11), (2, 2, 3))
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from poolcli import engine


@runtime_checkable
class Frame(Protocol):
    """An (H, W, C) frame whose rows can be read in strips."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype: ...

    def rows(self, top: int, bottom: int) -> np.ndarray:
        """Rows ``top:bottom`` as a (rows, W, C) array (possibly read-only)."""
        ...

    def to_array(self) -> np.ndarray:
        """The whole frame as a writable (H, W, C) array."""
        ...

    def planes(self) -> np.ndarray | engine.RowSource:
        """The frame as (C, H, W) planes for the engine, without a copy: a view of an array in
        memory, or a :class:`~poolcli.engine.RowSource` reading ``rows`` strip by strip."""
        ...

    def value_range(self) -> tuple[float, float]:
        """(min, max) over all samples."""
        ...

    def close(self) -> None:
        """Free what the frame holds outside this process's arrays (a decoder's copy)."""
        ...


class ArrayFrame(np.ndarray):
    """A frame that is simply an (H, W, C) array: it indexes, compares and computes as one."""

    def __new__(cls, array: np.ndarray) -> ArrayFrame:
        return np.asarray(array).view(cls)

    def rows(self, top: int, bottom: int) -> np.ndarray:
        return self[top:bottom].view(np.ndarray)

    def to_array(self) -> np.ndarray:
        return self.view(np.ndarray)

    def planes(self) -> np.ndarray:
        return self.view(np.ndarray).transpose(2, 0, 1)

    def value_range(self) -> tuple[float, float]:
        if not self.size:
            return (0, 0)
        return self.view(np.ndarray).min().item(), self.view(np.ndarray).max().item()

    def close(self) -> None:
        """Nothing to free: the array is this process's own memory."""
