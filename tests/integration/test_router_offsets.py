"""Where the router continues its input: the offset kept in its changelog (issue 18).

Each transaction writes the partition's next input offset as one reserved record of the
changelog; the consumer group's committed offset is only a lagging copy for lag monitoring,
and the truth for a changelog written before the offset moved into it.
"""

from __future__ import annotations

import re

import httpx
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from henvis.kafka import (
    consumer_config,
    ensure_changelog_topic,
    make_producer,
    topic_name,
)
from henvis.registry import load_registry
from henvis.schemas.topics import CONSENT_DECISIONS
from henvis.stream.transactional import RESERVED_KEY_PREFIX
from henvis_dev import loadgen
from tests.helpers import free_port, wait_until
from tests.integration.test_router_delivery import group_id, wait_until_outputs_visible

REGISTRY = load_registry()
TIMEOUT = 300  # a shared 2-core machine; tests wait on real conditions


def input_ends(kafka_settings) -> dict[int, int]:
    topic = topic_name(CONSENT_DECISIONS.name, kafka_settings)
    consumer = KafkaConsumer(**consumer_config(kafka_settings, group_id=None, client_id="test-ends"))
    try:
        tps = [TopicPartition(topic, p) for p in range(kafka_settings.partitions)]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def changelog(kafka_settings, group: str) -> tuple[dict[int, int], int, list]:
    """The changelog's input offsets per partition, its live state entries, and its records."""
    records = loadgen.read_records(kafka_settings, f"{group}-cases-changelog")
    latest = {(r.partition, r.key): r.value for r in records}
    offsets = {p: int(v) for (p, k), v in latest.items() if k.startswith(RESERVED_KEY_PREFIX)}
    entries = sum(1 for (_, k), v in latest.items() if not k.startswith(RESERVED_KEY_PREFIX) and v is not None)
    return offsets, entries, records


def restored(worker: loadgen.RouterProcess) -> dict:
    lines = [line for line in worker.log_lines() if line.get("event") == "partitions_restored"]
    return lines[-1] if lines else {}


def duplicates_dropped(metrics_port: int) -> float:
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    return float(re.search(r"^henvis_router_duplicates_dropped_total (\S+)$", metrics, re.M).group(1))


def test_a_worker_killed_before_its_group_offset_was_committed_restarts_where_its_changelog_says(
    kafka_settings, workers
):
    expected = loadgen.mixed_decisions(600, REGISTRY, seed=21)
    loadgen.produce(kafka_settings, expected.messages)
    group = group_id(kafka_settings)
    # A copy committed only once an hour: the kill comes after every transaction committed
    # and before any group offset did.
    first = workers("router-first", HENVIS_ROUTER_GROUP_COMMIT_SECONDS="3600")
    ends = input_ends(kafka_settings)
    wait_until(lambda: changelog(kafka_settings, group)[0] == ends, timeout=TIMEOUT, message="input not processed")
    wait_until_outputs_visible(kafka_settings)
    first.kill()
    assert loadgen.committed_lag(kafka_settings, group) is None  # the group never committed
    before = loadgen.observe(kafka_settings, REGISTRY)
    _, entries, records = changelog(kafka_settings, group)

    metrics_port = free_port()
    second = workers("router-second", HENVIS_ROUTER_METRICS_PORT=str(metrics_port))
    # The lagging copy catches up with the changelog although no new input arrives.
    wait_until(
        lambda: loadgen.committed_lag(kafka_settings, group) == 0, timeout=TIMEOUT, message="group offset not copied"
    )

    line = restored(second)
    assert {int(p): offset for p, offset in line["positions"].items()} == ends  # nothing read twice
    assert duplicates_dropped(metrics_port) == 0
    # The offset records are never taken for state.
    assert 0 < entries < len(records)
    assert line["state_entries"] == entries
    after = loadgen.observe(kafka_settings, REGISTRY)
    assert after == before
    assert after.duplicate_messages() == 0
    assert set(after.distinct_referrals()) == set(expected.referrals)
    assert second.stop() == 0


def test_a_changelog_written_before_the_offset_moved_into_it_is_taken_over_without_reprocessing(
    kafka_settings, workers
):
    old_group = group_id(kafka_settings)
    new_app = "henvis-router-taken-over"
    new_group = f"{kafka_settings.topic_prefix}{new_app}"
    first_batch = loadgen.mixed_decisions(400, REGISTRY, seed=22)
    loadgen.produce(kafka_settings, first_batch.messages)
    old = workers("router-old")
    wait_until(lambda: loadgen.committed_lag(kafka_settings, old_group) == 0, timeout=TIMEOUT, message="not processed")
    assert old.stop() == 0

    # What the code before issue 18 left behind: the same states in the changelog, no offset
    # record, and the input offsets committed in the group.
    offsets, entries, records = changelog(kafka_settings, old_group)
    assert offsets  # there was something to leave out
    ensure_changelog_topic(kafka_settings, f"{new_group}-cases-changelog", kafka_settings.partitions)
    producer = make_producer(kafka_settings, "test-old-changelog")
    for r in records:
        if not r.key.startswith(RESERVED_KEY_PREFIX):
            producer.send(f"{new_group}-cases-changelog", key=r.key, value=r.value, partition=r.partition)
    producer.flush()
    producer.close()
    topic = topic_name(CONSENT_DECISIONS.name, kafka_settings)
    committer = KafkaConsumer(**consumer_config(kafka_settings, group_id=new_group, client_id="test-old-group"))
    ends = input_ends(kafka_settings)
    committer.commit({TopicPartition(topic, p): OffsetAndMetadata(end, "", -1) for p, end in ends.items()})
    committer.close()
    before = loadgen.observe(kafka_settings, REGISTRY)

    metrics_port = free_port()
    new = workers("router-new", HENVIS_ROUTER_APP_ID=new_app, HENVIS_ROUTER_METRICS_PORT=str(metrics_port))
    wait_until(lambda: restored(new), timeout=TIMEOUT, message="partitions not restored")
    line = restored(new)
    assert {int(p): offset for p, offset in line["positions"].items()} == ends
    assert line["state_entries"] == entries

    second_batch = loadgen.mixed_decisions(200, REGISTRY, seed=23)
    loadgen.produce(kafka_settings, second_batch.messages)
    wait_until(lambda: loadgen.committed_lag(kafka_settings, new_group) == 0, timeout=TIMEOUT, message="not processed")
    wait_until_outputs_visible(kafka_settings)
    after = loadgen.observe(kafka_settings, REGISTRY)
    assert duplicates_dropped(metrics_port) == 0  # the first batch was not read again
    assert after.facts == before.facts + second_batch.facts
    assert set(after.distinct_referrals()) == set(before.distinct_referrals()) | set(second_batch.referrals)
    assert after.duplicate_messages() == 0
    # From now on the changelog holds the offset too.
    assert changelog(kafka_settings, new_group)[0] == input_ends(kafka_settings)
    assert new.stop() == 0
