"""The benchmark scripts stay runnable: each imports what it uses from the services and
answers ``--help`` (a renamed service function breaks a benchmark here, not in a release
note). Their figures are measurements and are never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(path.name for path in BENCH.glob("*.py") if not path.name.startswith("_"))


def test_every_benchmark_is_listed_in_the_readme():
    readme = (BENCH / "README.md").read_text(encoding="utf-8")
    assert [name for name in SCRIPTS if f"`{name}`" not in readme] == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_answers_help(script):
    result = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout
