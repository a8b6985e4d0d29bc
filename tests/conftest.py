"""Shared fixtures: small images and arrays written to a temporary folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, settings
from PIL import Image

from poolcli.cli import cli

SAMPLES = Path(__file__).resolve().parents[1] / "samples"

# Hypothesis profiles: "dev" keeps `python -m pytest` fast on a laptop; "ci" (CI=true, as set by
# most CI services) runs the full counts.  Choose one explicitly with HYPOTHESIS_PROFILE=ci|dev.
# Tests scale their counts from the profile (e.g. `settings.default.max_examples // 3`), so a
# heavier property stays proportionally lighter in both.
_HYPOTHESIS_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.register_profile("ci", max_examples=300, **_HYPOTHESIS_COMMON)
settings.register_profile("dev", max_examples=30, **_HYPOTHESIS_COMMON)
IN_CI = os.environ.get("CI", "").lower() == "true"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if IN_CI else "dev"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def invoke(runner, tmp_path, monkeypatch):
    """Run ``poolcli ARGS`` inside tmp_path; returns Click's result (stdout and stderr apart)."""
    monkeypatch.chdir(tmp_path)

    def call(*args: str, input: bytes | None = None):
        return runner.invoke(cli, list(args), input=input, catch_exceptions=False)

    return call


@pytest.fixture
def course(tmp_path) -> Path:
    path = tmp_path / "course.npy"
    shutil.copy(SAMPLES / "course_3x3.npy", path)
    return path


@pytest.fixture
def rgb_png(tmp_path, rng) -> Path:
    path = tmp_path / "rgb.png"
    Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(path)
    return path


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
