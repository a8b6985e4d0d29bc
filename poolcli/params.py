"""The pooling parameters of one run, as the user gave them (no dependencies)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Pair = tuple[int, int]
Op = Literal["max", "avg"]


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
            "dilation": list(self.dilation) if self.op == "max" else [1, 1],
            "ceil_mode": self.ceil_mode,
            "count_include_pad": self.count_include_pad if self.op == "avg" else None,
            "divisor_override": self.divisor_override if self.op == "avg" else None,
        }

    def slug(self) -> str:
        """Short name of the operation for output file names, e.g. ``max-k2-s1`` or ``avg-k3x2-p1``."""

        def pair(p: Pair) -> str:
            return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"

        parts = [self.op, f"k{pair(self.kernel)}"]
        if self.stride is not None and self.stride != self.kernel:
            parts.append(f"s{pair(self.stride)}")
        if self.padding != (0, 0):
            parts.append(f"p{pair(self.padding)}")
        if self.op == "max" and self.dilation != (1, 1):
            parts.append(f"d{pair(self.dilation)}")
        if self.ceil_mode:
            parts.append("ceil")
        return "-".join(parts)
