"""The supervisor starts again a part that exits asking for it, and only such a part."""

from __future__ import annotations

import stat

import pytest

from henvis_dev.supervisor import EXIT_RESTART, Part, Supervisor, SupervisorError

# Stands in for `python -m henvis.cli <args>`: the first run exits with $EXIT_CODE;
# a later run says it is ready and stays up.
FAKE_PART = """#!/bin/sh
marker="$PWD/ran-once"
if [ ! -e "$marker" ]; then touch "$marker"; exit "$EXIT_CODE"; fi
echo '{"event": "worker_ready"}'
exec sleep 60
"""


def supervisor_for(tmp_path, exit_code: int) -> Supervisor:
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_PART)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return Supervisor(tmp_path, {"EXIT_CODE": str(exit_code)}, python=str(fake))


def test_a_part_that_asks_for_a_restart_is_started_again_and_counted(tmp_path):
    supervisor = supervisor_for(tmp_path, EXIT_RESTART)
    child = supervisor.spawn(Part("router", ["router", "worker"]))
    child.process.wait(timeout=10)
    try:
        supervisor.check_alive(restart_timeout=10)
        assert supervisor.children["router"].alive
        assert supervisor.self_restarts == {"router": 1}
    finally:
        supervisor.stop_all()


def test_any_other_exit_is_a_failure_not_restarted(tmp_path):
    supervisor = supervisor_for(tmp_path, 1)
    child = supervisor.spawn(Part("router", ["router", "worker"]))
    child.process.wait(timeout=10)
    with pytest.raises(SupervisorError, match="router died"):
        supervisor.check_alive(restart_timeout=10)
    assert supervisor.self_restarts == {}
