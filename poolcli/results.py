"""The outcome of pooling one input, and its JSON line (no Rich here: quiet and JSON runs
never import it).

May import: NumPy and params (no Pillow, Rich or Click).
"""

from __future__ import annotations

import re
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
    mode: str = ""  # images: the pooled Pillow mode (L, RGB, I;16, ...); arrays: ""
    frames: int = 1
    input_shape: tuple[int, ...] | None = None  # (C, H, W) of what was pooled
    output_shape: tuple[int, ...] | None = None
    full_input_shape: tuple[int, ...] | None = None  # arrays: as given, batch included
    full_output_shape: tuple[int, ...] | None = None
    input_values: np.ndarray | None = None  # small arrays only, for grids
    output_values: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    levels: list[list[int]] | None = None  # pyramid: (C, H, W) of every level
    # A folder run's outputs written whole to temporary files, not yet in place: (shown,
    # temporary, target) of each file of each write; committed by paths.FolderRun.
    staged: list[list[tuple[str, str, str]]] = field(default_factory=list)

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


# Bytes of a file name that are not UTF-8 reach Python as lone surrogates (os.fsdecode's
# "surrogateescape"); no UTF-8 stream can carry them as they are.
_SURROGATES = re.compile("[\ud800-\udfff]")
# Control characters (C0, DEL, C1) would break a line or drive the terminal.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")


def json_line(result: Result, params: PoolParams) -> str:
    r"""The JSON line of a result: UTF-8 text, with the undecodable bytes of a file name written as
    ``\udcXX`` escapes, so that the line is always valid JSON and ``os.fsencode(json.loads(...))``
    gives the name's bytes back.

    >>> json_line(Result(input="caf\udce9.png", status="error"), PoolParams("max", (2, 2)))[:25]
    '{"input": "caf\\udce9.png"'
    """
    import json  # here: a run without --json never needs it

    text = json.dumps(result.as_json(params), ensure_ascii=False)
    return _SURROGATES.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def printable(text: str) -> str:
    r"""``text`` on one line and safe for a terminal: control characters as Python writes them in
    a string (``\n``, ``\x1b``), undecodable bytes of a file name as ``\xNN``.

    >>> print(printable("a\nb\x1b.png"), printable("caf\udce9.png"))
    a\nb\x1b.png caf\xe9.png
    """
    text = _CONTROLS.sub(lambda match: repr(match.group())[1:-1], text)
    return _SURROGATES.sub(lambda match: f"\\x{ord(match.group()) & 0xFF:02x}", text)
