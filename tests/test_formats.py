"""The format and mode tables: consistent with each other, and importable without Pillow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from poolcli import formats, images

ROOT = Path(__file__).resolve().parents[1]


def test_tables_without_pillow_or_numpy():
    """batch, pipeline and cli ask the tables without loading an image library; pixels and
    frames pool without Pillow."""
    code = ("import sys, poolcli.formats; a = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('numpy', 'PIL', 'imagecodecs')); import poolcli.pixels, poolcli.frames; "
            "b = sorted(m for m in sys.modules if m.split('.')[0] in ('PIL', 'imagecodecs')); print(a, b)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == "[] []"


def test_every_mode_has_a_format_and_a_dtype():
    for name, mode in formats.MODES.items():
        assert formats.formats_that_hold(name), name
        assert np.dtype(mode.dtype) == images.MODE_DTYPES[name]
    assert set(formats.SOURCE_MODES.values()) <= set(formats.MODES)
    for alpha, flat in formats.FLATTENED.items():
        assert formats.MODES[alpha].alpha and not formats.MODES[flat].alpha
        assert formats.MODES[alpha].channels == formats.MODES[flat].channels + 1


def test_extensions_and_formats_agree():
    for name, fmt in formats.FORMATS.items():
        assert formats.format_for_extension(fmt.extension) == name
    assert set(formats.EXTENSION_FORMATS) <= formats.READ_EXTENSIONS
