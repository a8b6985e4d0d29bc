"""Users of ``import poolcli`` get the real signatures: mypy, run on a small user script, accepts
the right calls and flags the wrong ones (the lazy ``__getattr__`` alone would make every name
``Any``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Each line ending in "# wrong" must be flagged; no other line may be.
USER_SCRIPT = '''\
from pathlib import Path

import numpy as np
import poolcli
from PIL import Image

image = Image.new("RGB", (4, 4))
small: Image.Image = poolcli.pool_image(image, "max", 2)
averaged = poolcli.pool_image("photo.png", "avg", (2, 2), stride=1, padding=1, ceil_mode=True)
written: str = poolcli.pool_file("a.png", "b.png", "max", 2, compression=6)
pooled: np.ndarray = poolcli.max_pool2d(np.zeros((4, 4)), 2)
size = poolcli.output_size(5, 2) + 1
poolcli.set_num_threads(None)
try:
    poolcli.pool_image(image, "max", 2)
except (poolcli.PoolError, poolcli.PoolingError):
    pass

out: Path = poolcli.pool_file("a.png", "b.png", "max", 2)  # wrong
poolcli.pool_image(image, "mean", 2)  # wrong
poolcli.pool_image(image, "max", "2")  # wrong
poolcli.pool_file("a.png", "b.png", "avg", 2, quality="high")  # wrong
poolcli.set_num_threads("4")  # wrong
poolcli.no_such_function()  # wrong
'''


def test_mypy_flags_wrong_calls_in_user_code(tmp_path):
    pytest.importorskip("mypy", reason="mypy comes with the test extra")
    script = tmp_path / "user.py"
    script.write_text(USER_SCRIPT, encoding="utf-8")
    (tmp_path / "mypy.ini").write_text("[mypy]\n", encoding="utf-8")  # the user's settings: mypy's defaults
    # The checkout on mypy's path (an editable install's import hook is invisible to mypy), its
    # own errors silenced as an installed package's are; a cache kept in the checkout's (ignored)
    # .mypy_cache, so that NumPy's stubs are not analysed afresh on every run.
    env = dict(os.environ, MYPYPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--hide-error-context", "--no-pretty",
         "--follow-imports", "silent", "--cache-dir", str(ROOT / ".mypy_cache" / "user-script"),
         "--config-file", str(tmp_path / "mypy.ini"), str(script)],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    flagged = {int(n) for n in re.findall(r"^.*user\.py:(\d+): error:", result.stdout, re.M)}
    wrong = {n for n, line in enumerate(USER_SCRIPT.splitlines(), start=1) if line.endswith("# wrong")}
    assert flagged == wrong, result.stdout + result.stderr
    assert result.returncode == 1
    assert 'Incompatible types in assignment (expression has type "str", variable has type "Path")' in result.stdout
    assert 'Argument 2 to "pool_image" has incompatible type "Literal[\'mean\']"' in result.stdout
