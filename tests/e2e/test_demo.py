"""The README's first command, end to end: the pilot through the real pipeline gives the report's figures.

One run of ``henvis demo --exit`` in a clean folder drives consent API → Kafka → router →
centre inbox → outcomes → stats with the seeded pilot, and is then inspected for what a
user would notice: the printed figures, processes left behind, and personal data where it
must never be (the stats database, every log line).
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from henvis_dev.pilot import generate_pilot
from tests.helpers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.kafka]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("demo") / "run"
    ports = {name: free_port() for name in ("broker", "consent", "centre", "stats")}
    args = [sys.executable, "-m", "henvis.cli", "demo", "--exit", "--run-dir", str(run_dir)]
    args += [item for name, port in ports.items() for item in (f"--{name}-port", str(port))]
    env = {key: value for key, value in os.environ.items() if not key.startswith("HENVIS_")}
    result = subprocess.run(
        args, capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path_factory.getbasetemp()
    )
    return run_dir, result


def test_demo_exits_cleanly_and_prints_the_status_report_figures(demo_run):
    _, result = demo_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"Accepted: 119\b", result.stdout)
    assert re.search(r"first-interview rate: 67 %", result.stdout)
    assert re.search(r"follow-up rate: 32 %", result.stdout)
    assert "Herning" in result.stdout and "All eleven" in result.stdout


def test_small_cells_are_suppressed_in_the_printed_table(demo_run):
    _, result = demo_run
    table = result.stdout.split("Evaluation of the pilot period", 1)[1].split("Accepted:", 1)[0]
    body = table.split("-----\n", 1)[1]  # the rows under the header
    assert len(body.strip().splitlines()) == 12  # eleven municipalities and the total
    for number in re.findall(r"(?<![\d<.])(\d+)(?![\d%.])", body):
        assert not 1 <= int(number) <= 4, f"a count of {number} was printed unsuppressed"


def test_no_process_is_left_behind(demo_run):
    run_dir, _ = demo_run
    leftovers = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if str(run_dir) in cmdline or cwd.startswith(str(run_dir)):
            leftovers.append(cmdline)
    assert leftovers == []


def personal_values() -> set[str]:
    plan = generate_pilot()
    values = set()
    for decision in plan.decisions:
        values.add(decision.case_ref)
        person = getattr(decision, "person", None)
        if person:
            values |= {person.full_name, person.phone, person.phone[3:]}
            values |= {value for value in (person.email, person.cpr) if value}
            if person.postal_address:
                values.add(person.postal_address.street)
    return values


def test_the_stats_database_holds_none_of_the_replayed_personal_data(demo_run):
    run_dir, result = demo_run
    assert result.returncode == 0
    databases = list(run_dir.rglob("stats.db"))
    assert databases, "the demo should keep its stats database in the run folder"
    dump = "\n".join(sqlite3.connect(databases[0]).iterdump())
    assert "referral" in dump.lower()
    leaked = sorted(value for value in personal_values() if value in dump)
    assert leaked == []


def test_no_log_line_of_any_service_holds_personal_data(demo_run):
    run_dir, _result = demo_run
    logs = "\n".join(path.read_text(encoding="utf-8", errors="replace") for path in (run_dir / "logs").glob("*.log"))
    assert "http_request" in logs  # the services did log
    leaked = sorted(value for value in personal_values() if value in logs)
    assert leaked == []
