"""The local Kafka broker (henvis_dev.broker) against the real JVM broker.

Each test starts its own broker in a temporary run folder on free ports, so it never
collides with the demo broker (9092) or a session broker another test module uses.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from henvis_dev import broker

pytestmark = pytest.mark.kafka


def _free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Local:
    """One test's broker settings; stopping it in teardown never leaves a JVM behind."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.port = _free_port()
        self.controller_port = _free_port()
        self.messages: list[str] = []

    def start(self) -> broker.BrokerHandle:
        """Start on this test's ports, collecting progress lines instead of printing."""
        return broker.start(
            self.run_dir, port=self.port, controller_port=self.controller_port, progress=self.messages.append
        )


@pytest.fixture
def local(tmp_path: Path):
    """A broker run folder of this test's own; stopped whatever the test did."""
    settings = _Local(tmp_path / "kafka")
    yield settings
    broker.stop(settings.run_dir, timeout=15)


def _create_topic(bootstrap: str, topic: str) -> None:
    """Create a one-partition topic."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()


def _topics(bootstrap: str) -> list[str]:
    """Topic names the broker reports."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return list(admin.list_topics())
    finally:
        admin.close()


def _consumer(bootstrap: str, group: str, tp: TopicPartition) -> KafkaConsumer:
    """A consumer assigned to tp (no rebalance wait) that commits only when told."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=1,  # so commit() moves past exactly one record
    )
    consumer.assign([tp])
    return consumer


def _consume_one_and_commit(bootstrap: str, group: str, tp: TopicPartition) -> bytes:
    """Read the first record of tp and commit past it, as a worker would."""
    consumer = _consumer(bootstrap, group, tp)
    try:
        for _ in range(20):
            records = consumer.poll(timeout_ms=1000).get(tp, [])
            if records:
                consumer.commit()
                return records[0].value
        raise AssertionError(f"no record arrived on {tp}")
    finally:
        consumer.close()


def test_start_status_stop(local: _Local):
    handle = local.start()

    assert handle.bootstrap == f"127.0.0.1:{local.port}"
    assert handle.port == local.port
    assert handle.run_dir == local.run_dir.resolve()
    assert broker.status(local.run_dir) == handle
    assert broker.answers_metadata(handle.bootstrap)
    assert (local.run_dir / "logs" / "server.log").stat().st_size > 0
    assert any("ready" in line for line in local.messages)

    assert broker.stop(local.run_dir) is True
    assert broker.status(local.run_dir) is None
    assert not (local.run_dir / "broker.pid").exists()
    assert not broker.answers_metadata(handle.bootstrap)
    assert broker.stop(local.run_dir) is False


def test_second_start_returns_the_running_broker(local: _Local):
    first = local.start()
    local.messages.clear()

    second = local.start()

    assert second == first
    assert any("already running" in line for line in local.messages)


def test_stop_then_start_keeps_topics_records_and_offsets(local: _Local):
    topic, group = f"broker-test-{uuid.uuid4().hex[:8]}", "broker-test-group"
    tp = TopicPartition(topic, 0)
    handle = local.start()
    _create_topic(handle.bootstrap, topic)
    producer = KafkaProducer(bootstrap_servers=handle.bootstrap)
    producer.send(topic, b"first").get(timeout=30)
    producer.send(topic, b"second").get(timeout=30)
    producer.close()
    assert _consume_one_and_commit(handle.bootstrap, group, tp) == b"first"

    assert broker.stop(local.run_dir)
    local.messages.clear()
    again = local.start()

    assert not any("Formatting" in line for line in local.messages)
    assert topic in _topics(again.bootstrap)
    consumer = _consumer(again.bootstrap, group, tp)
    try:
        assert consumer.committed(tp) == 1
    finally:
        consumer.close()
    assert _consume_one_and_commit(again.bootstrap, group, tp) == b"second"


def test_port_in_use_fails_with_a_clear_message(local: _Local):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", local.port))
        squatter.listen()
        with pytest.raises(broker.BrokerError, match=rf"port {local.port}.*--port"):
            local.start()
    assert broker.status(local.run_dir) is None


def test_status_ignores_a_stale_pid_file(tmp_path: Path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / "broker.pid").write_text(f"{gone.pid}\n")
    (tmp_path / "broker.port").write_text("9092\n")

    assert broker.status(tmp_path) is None
    assert broker.stop(tmp_path) is False
    assert not (tmp_path / "broker.pid").exists()


def test_cli_status_and_stop_on_an_empty_run_dir(tmp_path: Path, capsys):
    assert broker.main(["status", "--run-dir", str(tmp_path)]) == 3
    assert broker.main(["stop", "--run-dir", str(tmp_path)]) == 0
    assert "not running" in capsys.readouterr().out
