"""The README's quick start stays true: two commands, the second is what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_quick_start_has_exactly_two_commands_on_a_bundled_sample():
    install_and_run, install_and_test = quick_start_commands()
    assert install_and_run.startswith("python -m pip install . && poolcli ")
    sample = install_and_run.split()[-3]
    assert (ROOT / sample).is_file()
    assert install_and_test == 'python -m pip install ".[test]" && python -m pytest'


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert quick_start_commands()[1] in ci.splitlines()
