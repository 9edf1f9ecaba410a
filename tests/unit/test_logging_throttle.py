"""A broker outage is one line per kind of complaint per window, not a thousand a minute."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from henvis.logging import RepeatThrottle, configure_logging
from tests import examples


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def log_output(clock):
    stream = io.StringIO()
    configure_logging("test", "DEBUG", stream=stream, repeat_window=30.0, clock=clock)
    yield stream
    configure_logging("test", "INFO")


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_identical_warnings_within_the_window_are_one_line(log_output, clock):
    aiokafka = logging.getLogger("aiokafka")
    for attempt in range(100):
        clock.now += 0.1
        aiokafka.warning('Unable connect to "%s:%s": %s', "kafka-0", 9092, f"refused #{attempt}")
    out = lines(log_output)
    assert len(out) == 1
    assert out[0]["event"] == 'Unable connect to "kafka-0:9092": refused #0'
    assert "repeated" not in out[0]


def test_after_the_window_the_next_line_says_how_many_were_suppressed(log_output, clock):
    aiokafka = logging.getLogger("aiokafka")
    for _ in range(100):
        clock.now += 0.1
        aiokafka.warning("Unable to update metadata from %s", [1, 2])
    clock.now += 30.0
    aiokafka.warning("Unable to update metadata from %s", [1, 2])
    out = lines(log_output)
    assert len(out) == 2
    assert out[1]["repeated"] == 99
    assert out[1]["logger"] == "aiokafka" and out[1]["level"] == "warning"
    # The count restarts with each window.
    clock.now += 31.0
    aiokafka.warning("Unable to update metadata from %s", [1, 2])
    out = lines(log_output)
    assert len(out) == 3 and "repeated" not in out[2]


def test_different_templates_levels_and_loggers_are_not_merged(log_output, clock):
    logging.getLogger("aiokafka").error("Unable connect to node with id %s: %s", 1, "refused")
    logging.getLogger("aiokafka").error("Unable to update metadata from %s", [1])
    logging.getLogger("aiokafka").warning("Unable connect to node with id %s: %s", 1, "refused")
    logging.getLogger("aiokafka.conn").error("Unable connect to node with id %s: %s", 1, "refused")
    logging.getLogger("kafka.conn").error("Connect attempt to %s returned error %s", "k0", 111)
    logging.getLogger("aiokafka.consumer.fetcher").error("Consumer error %s", "x")
    assert len(lines(log_output)) == 6
    # ... while the second of each of them is suppressed.
    logging.getLogger("kafka.conn").error("Connect attempt to %s returned error %s", "k1", 113)
    logging.getLogger("aiokafka.consumer.fetcher").error("Consumer error %s", "y")
    assert len(lines(log_output)) == 6


def test_henvis_loggers_are_never_throttled(log_output, clock):
    for _ in range(50):
        structlog.get_logger("henvis.router").error("publish_failed", reason="broker_unreachable")
        logging.getLogger("henvis.kafka").error("broker unreachable")
        logging.getLogger("henvis.stream").warning("rebalancing")
    assert len(lines(log_output)) == 150
    assert all("repeated" not in line for line in lines(log_output))


def test_other_third_party_loggers_are_not_throttled(log_output):
    for _ in range(5):
        logging.getLogger("uvicorn.error").error("bad request")
        logging.getLogger("kafkaesque").warning("not kafka-python")
    assert len(lines(log_output)) == 10


def test_lines_that_pass_are_still_redacted(log_output, clock):
    aiokafka = logging.getLogger("aiokafka")
    event = examples.consent_given()
    aiokafka.warning("failed to send %s", event)
    aiokafka.warning("failed to send %s", event)
    clock.now += 30.0
    aiokafka.warning("failed to send %s to soren@example.dk, 22 34 56 78", event)
    aiokafka.warning("failed to send %s", event)
    text = log_output.getvalue()
    out = lines(log_output)
    # first passes, second suppressed, a new template passes, the first kind after the window
    assert len(out) == 3
    assert "repeated" not in out[1] and out[2]["repeated"] == 1
    for value in (event["person"]["full_name"], "soren@example.dk", "22 34 56 78", event["case_ref"]):
        assert value not in text


def test_the_filter_alone_with_an_injected_clock():
    clock = FakeClock()
    throttle = RepeatThrottle(window=10.0, clock=clock)

    def record(name: str, level: int = logging.WARNING, msg: str = "retry %s") -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, msg, (1,), None)

    assert throttle.filter(record("kafka.client"))
    assert not throttle.filter(record("kafka.client"))
    assert throttle.filter(record("henvis.kafka", logging.ERROR))
    assert throttle.filter(record("henvis.kafka", logging.ERROR))
    clock.now += 9.99
    assert not throttle.filter(record("kafka.client"))
    clock.now += 0.01
    later = record("kafka.client")
    assert throttle.filter(later) and later.repeated == 2
