"""Benchmarks write benchmarks/RESULTS.md only when asked (``--record``): running one leaves the
checkout as it was.  The smallest real run (bench_batch on two 64x48 images) shows it; the
recording itself is checked on a file of its own."""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def load_common():
    spec = importlib.util.spec_from_file_location("bench_common", BENCHMARKS / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snapshot() -> dict[str, bytes]:
    """Every file of benchmarks/ with its bytes (caches left out)."""
    return {p.relative_to(ROOT).as_posix(): p.read_bytes() for p in BENCHMARKS.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def git_status() -> str | None:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        return None  # an unpacked sdist
    return subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def test_a_benchmark_run_leaves_the_checkout_unchanged():
    before, status = snapshot(), git_status()
    run = subprocess.run([sys.executable, str(BENCHMARKS / "bench_batch.py"), "--count", "2", "--size", "64",
                          "--repeats", "1"], capture_output=True, text=True, check=False)
    assert run.returncode in (0, 1), run.stderr  # 1: a target missed (two tiny images gain nothing from -j 2)
    assert "2 RGB JPEGs of 64x48" in run.stdout and "images/s" in run.stdout
    assert snapshot() == before
    assert git_status() == status


def test_record_is_an_option_of_every_benchmark():
    common = load_common()
    parser = argparse.ArgumentParser()
    common.add_record_option(parser)
    assert parser.parse_args([]).record is None
    assert parser.parse_args(["--record"]).record == BENCHMARKS / "RESULTS.md"
    assert parser.parse_args(["--record", "elsewhere.md"]).record == Path("elsewhere.md")
    for script in sorted(BENCHMARKS.glob("bench_*.py")):
        source = script.read_text(encoding="utf-8")
        assert "common.add_record_option(parser)" in source, script.name
        # Written only through common.record (append_result uses it), and only under --record.
        assert not re.search(r"\bRESULTS\b(?!\.md)", source) and "no-record" not in source, script.name
        assert re.search(r"if args\.record:", source), script.name


def test_recording_appends_a_dated_section(tmp_path):
    common = load_common()
    results = tmp_path / "RESULTS.md"
    common.append_result("bench_x", "a 1.0 s; b 2.0 s", "met: a <= b", results=results)
    common.append_result("bench_y", "c 3.0 s", "MISSED: c", results=results)
    text = results.read_text()
    assert text.startswith(common.RESULTS_TITLE)
    assert text.count(common.RESULTS_TITLE) == 1
    assert re.search(r"\n## bench_x\.py, \d{4}-\d\d-\d\d \d\d:\d\d UTC\n\n- machine: .+\n- versions: poolcli .+\n"
                     r"- a 1\.0 s\n- b 2\.0 s\n- targets: met: a <= b\n\n## bench_y\.py", text)
    assert text.endswith("- c 3.0 s\n- targets: MISSED: c\n")
