"""Shared fixtures: small images and arrays written to a temporary folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from poolcli.cli import cli

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


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
