"""Personal data never reaches a log line, whoever logs it and however it is nested."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from henvis.logging import configure_logging
from tests import examples

PERSONAL_VALUES = [
    "Søren Ærø-Østergård",
    "+4522345678",
    "22 34 56 78",
    "soren@example.dk",
    "Bredgade 12, 2. th.",
    "0101901234",
    "010190-1234",
    "4100-80261-00123-21",
]


@pytest.fixture
def log_output():
    stream = io.StringIO()
    configure_logging("test", "DEBUG", stream=stream)
    yield stream
    configure_logging("test", "INFO")


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def assert_clean(text: str) -> None:
    assert "\\u00" not in text, "log lines are written as UTF-8, so a check for Danish letters is meaningful"
    for value in PERSONAL_VALUES:
        assert value not in text, f"{value!r} leaked into the log"


def test_an_event_dict_full_of_personal_data_is_redacted(log_output):
    event = examples.consent_given()
    structlog.get_logger().info(
        "received",
        decision=event,
        case_ref=event["case_ref"],
        phone="22 34 56 78",
        note="call 22 34 56 78 or mail soren@example.dk, cpr 010190-1234",
    )
    text = log_output.getvalue()
    assert_clean(text)
    record = lines(log_output)[0]
    assert record["event"] == "received" and record["service"] == "test"
    assert record["decision"]["person"] == "[redacted]"
    # What is not personal stays readable, so the logs are still useful.
    assert event["event_id"] in text and "drink_driving" in text


def test_standard_library_loggers_go_through_the_same_redaction(log_output):
    logging.getLogger("aiokafka").warning("failed to send %s", examples.consent_given())
    logging.getLogger("uvicorn.error").error("bad header from soren@example.dk 0101901234")
    text = log_output.getvalue()
    assert len(lines(log_output)) == 2
    assert_clean(text)


def test_exceptions_are_logged_without_the_values_in_their_message(log_output):
    try:
        raise ValueError("could not parse phone +45 22 34 56 78 for Søren")
    except ValueError:
        structlog.get_logger().exception("parse_failed", full_name="Søren Ærø-Østergård")
    text = log_output.getvalue()
    assert "+45 22 34 56 78" not in text and "Søren Ærø-Østergård" not in text
    assert "ValueError" in text


def test_timestamps_and_ids_are_not_mistaken_for_personal_data(log_output):
    structlog.get_logger().info(
        "tick", referral_id="3f2a1b4c-1234-5678-9abc-123456789012", day="2026-11-25", count=12345678
    )
    record = lines(log_output)[0]
    assert record["referral_id"] == "3f2a1b4c-1234-5678-9abc-123456789012"
    assert record["day"] == "2026-11-25"
    assert record["timestamp"].startswith("20")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_readable_columns_with_the_same_redaction():
    terminal = _Terminal()
    configure_logging("test", "INFO", stream=terminal)
    try:
        structlog.get_logger("henvis.test").info("referral_received", referral_id="r-1", phone="22 34 56 78")
        logging.getLogger("uvicorn.error").error("bad header from soren@example.dk")
    finally:
        configure_logging("test", "INFO")
    text = terminal.getvalue()
    assert "referral_received" in text and "referral_id=r-1" in text
    assert not text.lstrip().startswith("{")  # columns, not JSON
    assert_clean(text)
