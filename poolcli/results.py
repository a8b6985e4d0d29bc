"""The outcome of pooling one input, and its JSON line (no Rich here: quiet and JSON runs
never import it).

May import: NumPy and params (no Pillow, Rich or Click).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poolcli.params import PoolParams

# Arrays with planes up to this size are shown as grids of numbers in the report.
GRID_LIMIT = 16


@dataclass
class Result:
    """The outcome of pooling one input: what the report and the JSON line show."""

    input: str
    output: str | None = None
    status: str = "ok"  # "ok", "error" or "skipped"
    error: str | None = None
    seconds: float = 0.0
    description: str = ""  # e.g. "16-bit RGB image, uint16" or "array of float32"
    output_description: str = ""  # what was written, e.g. "16-bit RGB PNG"
    dtype: str = ""
    frames: int = 1
    input_shape: tuple[int, ...] | None = None  # (C, H, W) of what was pooled
    output_shape: tuple[int, ...] | None = None
    full_input_shape: tuple[int, ...] | None = None  # arrays: as given, batch included
    full_output_shape: tuple[int, ...] | None = None
    input_values: np.ndarray | None = None  # small arrays only, for grids
    output_values: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    levels: list[list[int]] | None = None  # pyramid: (C, H, W) of every level

    def as_json(self, params: PoolParams) -> dict[str, Any]:
        """One JSON object: the keys documented in the README, in a fixed order."""
        record: dict[str, Any] = {
            "input": self.input,
            "output": self.output,
            "op": params.op,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "output_shape": list(self.output_shape) if self.output_shape else None,
        }
        record.update(params.as_json())
        if self.levels is not None:
            record["levels"] = self.levels
        record.update(status=self.status, error=self.error, seconds=round(self.seconds, 6), notes=list(self.notes))
        return record


def json_line(result: Result, params: PoolParams) -> str:
    return json.dumps(result.as_json(params), ensure_ascii=False)


