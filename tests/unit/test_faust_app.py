"""The faust fixes every henvis worker relies on (henvis/faust_app.py)."""

from __future__ import annotations

import asyncio

from faust.types import TP

import henvis.faust_app as faust_app
from henvis.faust_app import HenvisApp, IdempotentProducer, PositionConsumer, app_options
from henvis.settings import KafkaSettings
from henvis.supervisor import EXIT_RESTART


def app(tmp_path) -> HenvisApp:
    return HenvisApp("test-app", **app_options(KafkaSettings(bootstrap_servers="127.0.0.1:1"), tmp_path))


def test_producer_is_idempotent_and_waits_for_all_replicas(tmp_path):
    producer = app(tmp_path).producer
    assert isinstance(producer, IdempotentProducer)
    extra = producer._settings_extra()
    assert extra["acks"] == "all" and extra["enable_idempotence"] is True


def test_apps_are_at_least_once_without_a_web_port(tmp_path):
    options = app_options(KafkaSettings(), tmp_path, session_timeout_seconds=9)
    assert options["processing_guarantee"] == "at_least_once"
    assert options["web_enabled"] is False
    assert options["broker_session_timeout"] == 9 and options["broker_heartbeat_interval"] == 3


def test_the_consumer_commits_what_the_agent_handled_not_what_faust_acked(tmp_path):
    consumer = app(tmp_path).consumer
    decisions = TP("consent.decisions.v1", 0)
    consumer.positions.track(decisions.topic)
    consumer.positions.reset({decisions: 10}, now=0.0)
    consumer._committed_offset[decisions] = 10
    # faust acked 11..13 (e.g. skipped as a stale generation); the agent never had 10..13.
    consumer._acked[decisions].extend([11, 12, 13])
    assert consumer._filter_committable_offsets([decisions]) == {}
    consumer.positions.handled(decisions, 10, now=1.0)
    assert consumer._filter_committable_offsets([decisions]) == {decisions: 11}


def test_untracked_topics_keep_fausts_own_commit_rule(tmp_path):
    consumer = app(tmp_path).consumer
    ticks = TP("henvis-router-withdrawal-ticks", 0)
    consumer._acked[ticks].extend([0, 1, 2])
    assert consumer._filter_committable_offsets([ticks]) == {ticks: 3}


def test_every_henvis_app_uses_the_position_consumer(tmp_path):
    assert isinstance(app(tmp_path).consumer, PositionConsumer)


class Watchdog:
    """A worker whose one input partition sits at ``committed`` while the broker's end offset
    is ``end``; the clock, the broker's availability and the process exit are the test's."""

    def __init__(self, tmp_path, monkeypatch, committed: int, end: int):
        self.end, self.clock, self.broker_up, self.exits = end, 0.0, True, []
        kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")
        self.worker = HenvisApp("test-app", **app_options(kafka, tmp_path), kafka=kafka)
        consumer = self.worker.consumer
        decisions = TP("consent.decisions.v1", 0)
        consumer.positions.track(decisions.topic)
        consumer.positions.reset({decisions: committed}, now=0.0)  # nothing handled since t=0
        monkeypatch.setattr(consumer, "assignment", lambda: {decisions})
        monkeypatch.setattr(self.worker._end_offsets, "read", self._read)
        monkeypatch.setattr(faust_app.time, "monotonic", lambda: self.clock)
        monkeypatch.setattr(faust_app.os, "_exit", self.exits.append)

    def _read(self, partitions):
        if not self.broker_up:
            raise ConnectionError("broker away")
        return {("consent.decisions.v1", 0): self.end}

    def check(self, at: float) -> list[int]:
        self.clock = at
        asyncio.run(self.worker._exit_if_stuck())
        return self.exits


def test_a_worker_whose_input_is_stuck_exits_asking_for_a_restart(tmp_path, monkeypatch, capsys):
    watchdog = Watchdog(tmp_path, monkeypatch, committed=10, end=25)
    watchdog.check(at=0.0)  # the broker answers; the clock starts
    assert watchdog.check(at=faust_app.STUCK_SECONDS - 1) == []
    assert watchdog.check(at=faust_app.STUCK_SECONDS + 1) == [EXIT_RESTART]
    out = capsys.readouterr()
    assert "input_stuck" in out.out and "next_offset" in out.out and "thread" in out.err


def test_after_a_broker_outage_the_worker_gets_the_full_time_again(tmp_path, monkeypatch):
    watchdog = Watchdog(tmp_path, monkeypatch, committed=10, end=25)
    watchdog.broker_up = False
    outage_end = 10 * faust_app.STUCK_SECONDS  # a long outage, nothing handled during it
    watchdog.check(at=outage_end)
    watchdog.broker_up = True
    watchdog.check(at=outage_end)  # back: the consumer is not stuck yet, it just got its broker
    assert watchdog.check(at=outage_end + 30) == []


def test_a_caught_up_worker_is_idle_not_stuck(tmp_path, monkeypatch):
    watchdog = Watchdog(tmp_path, monkeypatch, committed=25, end=25)
    watchdog.check(at=0.0)
    # nothing handled for long, but nothing to handle
    assert watchdog.check(at=10 * faust_app.STUCK_SECONDS) == []
