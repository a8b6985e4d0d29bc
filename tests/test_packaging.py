"""The sdist and the wheel, built from a copy of the checkout by setuptools' own backend: the sdist
holds its tests with everything they read (conftest, oracle, data, docs, samples, CHANGELOG, the
CI script) and they pass inside it; the wheel installs the man page as share/man/man1/poolcli.1.

Under CI=true the sdist is also installed the README's way (``pip install ".[test]"``) into a
fresh virtual environment and its whole suite run there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import poolcli

ROOT = Path(__file__).resolve().parents[1]
NAME = f"poolcli-{poolcli.__version__}"
# Not part of the project: caches, environments, builds and outputs of the samples (.gitignore).
LOCAL = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                               ".pytest_cache", ".hypothesis", ".ruff_cache", ".mypy_cache", "*.max-*", "*.avg-*")
# What the tests read besides themselves; the rest of tests/, docs/ and samples/ is checked as a whole.
NEEDED = ["tests/conftest.py", "tests/oracle.py", "tests/data/torch_golden.npz", "docs/poolcli.1",
          "CHANGELOG.md", "LICENSE", "README.md", ".ci/run", "benchmarks/common.py", "MANIFEST.in"]


def _setuptools_ok() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 77


pytestmark = pytest.mark.skipif(not _setuptools_ok(), reason='needs setuptools>=77 (pip install ".[test]")')


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel) built from a clean copy of the checkout (nothing is written into it)."""
    work = tmp_path_factory.mktemp("build")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=LOCAL)
    # The folder is read first: the backend rewrites sys.argv while it builds.
    script = ("import sys; from setuptools import build_meta as b; out = sys.argv[1]; "
              "print('built', b.build_sdist(out), b.build_wheel(out))")  # the last line, after the build's chatter
    run = subprocess.run([sys.executable, "-c", script, str(work / "dist")], cwd=source, capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    sdist_name, wheel_name = run.stdout.splitlines()[-1].split()[1:]
    return work / "dist" / sdist_name, work / "dist" / wheel_name


def project_files(*folders: str) -> set[str]:
    """The files of these folders of the checkout, as relative paths (local clutter left out)."""
    found = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*"):
            relative = path.relative_to(ROOT)
            if path.is_file() and not LOCAL(str(path.parent), [path.name]) and not any(
                    LOCAL(str(ROOT), [part]) for part in relative.parts):
                found.add(relative.as_posix())
    return found


def test_the_sdist_holds_the_tests_and_all_they_read(built):
    sdist, _ = built
    with tarfile.open(sdist) as archive:
        names = {name.removeprefix(f"{NAME}/") for name in archive.getnames()}
    assert set(NEEDED) <= names
    missing = project_files("tests", "docs", "samples", "benchmarks") - names
    assert not missing
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_the_wheel_installs_the_man_page(built):
    _, wheel = built
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        man = archive.read(f"{NAME}.data/data/share/man/man1/poolcli.1")
    assert man == (ROOT / "docs" / "poolcli.1").read_bytes()
    assert {"poolcli/py.typed", "poolcli/explain/picture.py", "poolcli/manpage.py"} <= names
    assert not [name for name in names if name.startswith(("tests/", "docs/", "benchmarks/"))]


def unpacked(sdist: Path, into: Path) -> Path:
    with tarfile.open(sdist) as archive:
        archive.extractall(into, filter="data")
    return into / NAME


def test_tests_run_inside_the_unpacked_sdist(built, tmp_path):
    """A few files that need conftest, the oracle, the torch goldens, the docs and the CI script."""
    tree = unpacked(built[0], tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_readme.py",
                          "tests/test_docs.py", "tests/test_changelog.py", "tests/test_engine.py", "-k",
                          "readme or docs or changelog or golden or oracle"],
                         cwd=tree, env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-3000:]
    assert " passed" in run.stdout and "error" not in run.stdout.splitlines()[-1]


@pytest.mark.skipif(os.environ.get("CI", "").lower() != "true", reason="CI only: a fresh environment and the whole "
                    "suite (minutes, and the package index)")
def test_pip_install_test_extra_then_pytest_inside_the_sdist(built, tmp_path):
    tree = unpacked(built[0], tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / ("Scripts" if os.name == "nt" else "bin") / "python")
    # The README's command in the unpacked sdist; CI unset inside, so this test does not run again.
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "VIRTUAL_ENV", "PYTHONPATH")}
    install = subprocess.run([python, "-m", "pip", "install", "-q", ".[test]"], cwd=tree, env=env,
                             capture_output=True, text=True, check=False)
    assert install.returncode == 0, install.stderr[-3000:]
    run = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tree, env=env,
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-5000:]
