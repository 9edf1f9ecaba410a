"""Every event type travels through the real broker on its own topic and comes back equal."""

from __future__ import annotations

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from henvis.kafka import centre_topic_name, ensure_topics, henvis_topics, producer_config, topic_name
from henvis.registry import load_registry
from henvis.schemas.events import parse_event
from henvis.schemas.topics import ALL_TOPICS, CENTRE_REFERRALS
from tests import examples


def topic_for(spec, settings) -> str:
    if spec is CENTRE_REFERRALS:
        return centre_topic_name("herning", settings, load_registry())
    return topic_name(spec.name, settings)


def test_every_event_type_round_trips_through_its_topic(kafka_settings):
    ensure_topics(kafka_settings, henvis_topics(kafka_settings, load_registry()))
    sent = {}
    producer = KafkaProducer(**producer_config(kafka_settings, "roundtrip-test"))
    for spec in ALL_TOPICS:
        for model in spec.messages:
            event = examples.example_event(model.model_fields["event_type"].default)
            topic = topic_for(spec, kafka_settings)
            producer.send(topic, key=event.kafka_key(), value=event.to_bytes()).get(timeout=30)
            sent[event.event_id] = (topic, event)
    producer.close()

    consumer = KafkaConsumer(
        *{topic for topic, _ in sent.values()},
        bootstrap_servers=kafka_settings.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=15_000,
    )
    received = {}
    for message in consumer:
        event = parse_event(message.value)
        received[event.event_id] = (message.topic, event, message.key)
        if len(received) == len(sent):
            break
    consumer.close()

    assert set(received) == set(sent)
    for event_id, (topic, event) in sent.items():
        got_topic, got_event, key = received[event_id]
        assert got_topic == topic
        assert got_event == event
        assert key == event.kafka_key()


def test_topics_with_personal_data_have_bounded_retention(kafka_settings):
    topics = henvis_topics(kafka_settings, load_registry())
    assert len(topics) == 4 + 11
    ensure_topics(kafka_settings, topics)
    admin = KafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, name, configs={"retention.ms": None}) for name in topics]
        described = admin.describe_configs(resources, config_filter="all")["topic"]
        retention = {name: int(configs["retention.ms"]["value"]) for name, configs in described.items()}
        day = 24 * 3600 * 1000
        for name, personal in topics.items():
            assert retention[name] == (14 * day if personal else 730 * day), name
        partitions = admin.describe_topics([topic_name("consent.decisions.v2", kafka_settings)])[0]["partitions"]
        assert len(partitions) == kafka_settings.partitions
    finally:
        admin.close()


def test_ensure_topics_is_idempotent(kafka_settings):
    topics = henvis_topics(kafka_settings, load_registry())
    first = ensure_topics(kafka_settings, topics)
    assert sorted(first) == sorted(topics)
    assert ensure_topics(kafka_settings, topics) == []
