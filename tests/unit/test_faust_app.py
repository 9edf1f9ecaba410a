"""The faust fixes every henvis worker relies on (henvis/faust_app.py)."""

from __future__ import annotations

from faust.types import TP
from faust.types.tuples import ConsumerMessage

from henvis.faust_app import HenvisApp, IdempotentProducer, app_options
from henvis.settings import KafkaSettings


def message(offset: int) -> ConsumerMessage:
    return ConsumerMessage(
        topic="t.consent.decisions.v1", partition=0, offset=offset, timestamp=0.0,
        timestamp_type=0, headers=[], key=b"k", value=b"v", checksum=None,
    )


def app(tmp_path) -> HenvisApp:
    faust_app = HenvisApp("test-app", **app_options(KafkaSettings(bootstrap_servers="127.0.0.1:1"), tmp_path))
    # As when an agent subscribes to the topic with acks on (at_least_once).
    faust_app.topics._acking_topics.add("t.consent.decisions.v1")
    return faust_app


def test_a_message_the_stream_skipped_is_never_acked_so_it_cannot_be_committed(tmp_path):
    consumer = app(tmp_path).consumer
    skipped = message(7)  # fetched before a rebalance: the stream never handed it to an agent
    assert skipped.tracked is False
    assert consumer.ack(skipped) is False
    assert 7 not in consumer._acked_index[skipped.tp]
    skipped.tracked = True  # re-fetched after the rebalance and handed to the agent this time
    assert consumer.ack(skipped) is True


def test_a_message_an_agent_handled_is_acked(tmp_path):
    consumer = app(tmp_path).consumer
    delivered = message(8)
    delivered.tracked = True  # what Stream.__aiter__ does before yielding it to the agent
    assert consumer.ack(delivered) is True
    assert consumer._acked[TP("t.consent.decisions.v1", 0)] == [8]


def ack_handled(consumer, *offsets: int) -> None:
    for offset in offsets:
        handled = message(offset)
        handled.tracked = True
        consumer.ack(handled)


def test_no_commit_while_the_next_offset_to_commit_is_unhandled(tmp_path):
    consumer = app(tmp_path).consumer
    tp = TP("t.consent.decisions.v1", 0)
    consumer._committed_offset[tp] = 31  # Kafka's meaning: offset 31 is the next to read
    ack_handled(consumer, 32, 33, 34)
    assert consumer._new_offset(tp) is None  # faust alone would commit 35 and lose 31
    ack_handled(consumer, 31)
    assert consumer._new_offset(tp) == 35


def test_a_skipped_head_message_holds_the_commit_even_before_the_first_commit(tmp_path):
    consumer = app(tmp_path).consumer
    tp = TP("t.consent.decisions.v1", 0)
    assert consumer._committed_offset[tp] is None  # a new group: nothing committed yet
    consumer.ack(message(0))  # skipped during a rebalance: refused
    ack_handled(consumer, 1, 2)
    assert consumer._new_offset(tp) is None
    ack_handled(consumer, 0)  # read again after the rebalance and handled
    assert consumer._new_offset(tp) == 3


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
