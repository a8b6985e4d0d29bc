"""The pooling parameters of one run, as the user gave them.

May import: the standard library only (no NumPy, Pillow, Rich or Click), so every layer may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Pair = tuple[int, int]
# Default --memory-limit: leaves room under a 400 MiB peak for Python, NumPy, tifffile and zarr.
DEFAULT_MEMORY_LIMIT = 256 << 20
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``64M``, ``2G``, ``1.5G``, ``512MiB`` or plain bytes, as a byte count (binary units).

    Examples
    --------
    >>> parse_size("64M"), parse_size("2g"), parse_size("1000")
    (67108864, 2147483648, 1000)
    """
    value = text.strip().upper().replace(" ", "")
    for tail in ("IB", "B"):
        if value.endswith(tail) and len(value) > len(tail) and value[-len(tail) - 1] in "KMGT":
            value = value[: -len(tail)]
    unit = value[-1] if value and value[-1] in _UNITS else ""
    number = value[: -1] if unit else value
    try:
        digits = number[1:] if number[:1] in ("+", "-") else number
        if not (digits.isascii() and digits.replace(".", "", 1).isdigit()):  # float() reads "٣", "1_0", "nan"
            raise ValueError
        amount = float(number)
        size = int(amount * _UNITS[unit])
    except (ValueError, OverflowError):  # OverflowError: "inf"
        raise ValueError(f"{text!r} is not a size: use bytes or K, M, G, T (e.g. 64M, 2G)") from None
    if not amount > 0 or size < 1:
        raise ValueError(f"{text!r}: the memory limit must be positive (e.g. 64M, 2G)")
    return size
Op = Literal["max", "avg"]


@dataclass(frozen=True)
class OpSpec:
    """What one pooling operation is, in one place: which torch parameters it takes, what its
    padding stands for, and which engine function computes it.  :data:`OPS` holds every op;
    code asks ``params.spec`` instead of testing the op's name.

    Examples
    --------
    >>> OPS["max"].dilates, OPS["avg"].averages, OPS["avg"].padding_value
    (True, True, '0')
    """

    name: Op
    engine_function: str  # the engine's torch-named function: "max_pool2d" / "avg_pool2d"
    dilates: bool  # takes torch's dilation (max); otherwise the taps are contiguous
    averages: bool  # divides a window sum: divisors, count_include_pad, divisor_override, --linear, alpha weights
    indices: bool  # can return torch's flat indices of the maxima
    padding_value: str  # what implicit padding stands for, as explain draws it
    description: str  # the torch module it matches


OPS: dict[str, OpSpec] = {
    "max": OpSpec("max", "max_pool2d", dilates=True, averages=False, indices=True, padding_value="-inf",
                  description="nn.MaxPool2d"),
    "avg": OpSpec("avg", "avg_pool2d", dilates=False, averages=True, indices=False, padding_value="0",
                  description="nn.AvgPool2d"),
}


def format_pair(pair: Pair) -> str:
    """A (height, width) pair as the package writes it everywhere: ``2`` when both are equal, else
    ``2x3`` (the CLI reads both forms back).

    Examples
    --------
    >>> format_pair((2, 2)), format_pair((2, 3))
    ('2', '2x3')
    """
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


@dataclass(frozen=True)
class PoolParams:
    """Operation and torch parameters; ``stride=None`` means the default (the kernel)."""

    op: Op
    kernel: Pair
    stride: Pair | None = None
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None

    @property
    def effective_stride(self) -> Pair:
        return self.stride if self.stride is not None else self.kernel

    @property
    def spec(self) -> OpSpec:
        """The operation's entry in :data:`OPS`."""
        return OPS[self.op]

    @property
    def effective_dilation(self) -> Pair:
        """The spacing of a window's taps: the dilation where the op takes one, else (1, 1).

        >>> PoolParams("avg", (3, 3), dilation=(2, 2)).effective_dilation
        (1, 1)
        """
        return self.dilation if self.spec.dilates else (1, 1)

    def engine_args(self) -> dict:
        """Keyword arguments for the op's engine function (:meth:`max_args` or :meth:`avg_args`)."""
        return self.avg_args() if self.spec.averages else self.max_args()

    def max_args(self) -> dict:
        """Keyword arguments for ``engine.max_pool2d``."""
        return dict(kernel_size=self.kernel, stride=self.effective_stride, padding=self.padding,
                    dilation=self.dilation, ceil_mode=self.ceil_mode)

    def avg_args(self) -> dict:
        """Keyword arguments for ``engine.avg_pool2d``."""
        return dict(kernel_size=self.kernel, stride=self.effective_stride, padding=self.padding,
                    ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad,
                    divisor_override=self.divisor_override)

    def as_json(self) -> dict:
        """The parameter keys of a JSON report line (torch's names, pairs as [H, W])."""
        return {
            "kernel_size": list(self.kernel),
            "stride": list(self.effective_stride),
            "padding": list(self.padding),
            "dilation": list(self.effective_dilation),
            "ceil_mode": self.ceil_mode,
            "count_include_pad": self.count_include_pad if self.spec.averages else None,
            "divisor_override": self.divisor_override if self.spec.averages else None,
        }

    def slug(self) -> str:
        """Short name of the operation for output file names, e.g. ``max-k2-s1`` or ``avg-k3x2-p1``."""
        parts = [self.op, f"k{format_pair(self.kernel)}"]
        if self.stride is not None and self.stride != self.kernel:
            parts.append(f"s{format_pair(self.stride)}")
        if self.padding != (0, 0):
            parts.append(f"p{format_pair(self.padding)}")
        if self.effective_dilation != (1, 1):
            parts.append(f"d{format_pair(self.dilation)}")
        if self.ceil_mode:
            parts.append("ceil")
        return "-".join(parts)
