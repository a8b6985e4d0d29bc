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
# The pooling properties draw every parameter independently and `assume()` away the invalid
# combinations (a pad over half the kernel, a window longer than the padded input): most draws of
# a small array are invalid, by design, so the "filters too much" check would fail at random.
_HYPOTHESIS_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.filter_too_much])
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


# --------------------------------------------------------------------------- object storage and clusters


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (just now)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on localhost; the standard AWS variables point s3fs (and the workers
    started after it) at it."""
    import logging

    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    patch = pytest.MonkeyPatch()
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", endpoint)):
        patch.setenv(name, value)
    yield endpoint
    patch.undo()
    server.stop()


@pytest.fixture
def s3(s3_endpoint, request):
    """A fresh bucket for one test (named after it), and an s3fs client."""
    import hashlib
    import re

    import s3fs

    fs = s3fs.S3FileSystem()
    readable = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower().replace("_", "-"))[:40].strip("-")
    bucket = f"b-{readable}-{hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]}"  # parameters differ
    fs.mkdir(bucket)
    yield fs, bucket
    fs.invalidate_cache()


def upload(fs, folder: Path, prefix: str) -> None:
    """Every file under ``folder`` to ``prefix`` (a Zarr store's keys, a folder of images)."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{prefix}/{path.relative_to(folder).as_posix()}", path.read_bytes())
