"""Regenerate tests/data/torch_golden.npz from real torch (2.13, CPU).

Usage: python tests/data/make_torch_golden.py   (needs torch; the tests themselves do not)

Random small inputs (floats with NaN, infinities and both zeros; integers), random parameters,
only cases torch accepts; stores each input with torch's values (and max indices).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

OUT = Path(__file__).with_name("torch_golden.npz")


def main() -> None:
    rng = np.random.default_rng(2026)
    arrays: dict[str, np.ndarray] = {}
    meta = []
    while len(meta) < 240:
        op = "max" if len(meta) % 2 == 0 else "avg"
        dtypes = ["float32", "float64", "float16", "int64"] + (["uint8", "int8", "int16", "int32"] if op == "max" else [])
        dtype = dtypes[rng.integers(len(dtypes))]
        shape = (int(rng.integers(0, 3)), int(rng.integers(1, 4)), int(rng.integers(1, 10)), int(rng.integers(1, 10)))
        if dtype.startswith("float"):
            x = np.round(rng.standard_normal(shape) * 4, int(rng.integers(0, 3))).astype(dtype)
            for value, share in ((np.nan, 0.05), (-0.0, 0.1), (0.0, 0.1), (np.inf, 0.03), (-np.inf, 0.03)):
                x[rng.random(shape) < share] = value
        else:
            info = np.iinfo(dtype)
            x = rng.integers(max(int(info.min), -50), min(int(info.max), 50), shape, endpoint=True).astype(dtype)
        k = [int(v) for v in rng.integers(1, 5, 2)]
        s = [int(v) for v in rng.integers(1, 4, 2)]
        p = [int(v) for v in rng.integers(0, 3, 2)]
        d = [int(v) for v in rng.integers(1, 3, 2)]
        ceil = bool(rng.random() < 0.5)
        cip = bool(rng.random() < 0.5)
        dov = [None, 1, 3, -2][int(rng.integers(4))]
        t = torch.from_numpy(x)
        try:
            if op == "max":
                values, indices = F.max_pool2d(t, k, s, p, d, ceil, return_indices=True)
            else:
                values, indices = F.avg_pool2d(t, k, s, p, ceil, cip, dov), None
        except RuntimeError:
            continue
        i = len(meta)
        arrays[f"{i}_x"] = x
        arrays[f"{i}_values"] = values.numpy()
        if indices is not None:
            arrays[f"{i}_indices"] = indices.numpy()
        meta.append(dict(op=op, dtype=dtype, k=k, s=s, p=p, d=d, ceil=ceil, cip=cip, dov=dov))
    np.savez_compressed(OUT, meta=np.array(json.dumps(meta)), **arrays)
    print(f"wrote {len(meta)} cases to {OUT} with torch {torch.__version__}")


if __name__ == "__main__":
    main()
