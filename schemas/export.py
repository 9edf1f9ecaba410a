"""The contract as documents: one JSON Schema per event and an AsyncAPI 3 document of every
topic, built from the models alone (the centre slugs and the version are passed in, so this
package imports nothing of henvis).  ``henvis schemas export`` (:mod:`henvis.contract`) writes
them to ``schemas/generated/`` and checks them there.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from henvis.schemas.events import EVENT_TYPES, POLICE_EVENTS, Event
from henvis.schemas.topics import ALL_TOPICS, CENTRE_REFERRALS, TopicSpec

_REF = "#/components/schemas/{model}"
_KAFKA_BINDING = "0.5.0"


def _camel(text: str) -> str:
    parts = text.replace(".", "_").split("_")
    return parts[0] + "".join(part.title() for part in parts[1:])


def _version(model: type[Event]) -> int:
    return model.model_fields["schema_version"].default


def event_json_schema(model: type[Event]) -> dict:
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"urn:henvis:event:{model.model_fields['event_type'].default}:v{_version(model)}"
    return schema


def _components_schemas() -> dict:
    """Every event model with nested models hoisted into ``components/schemas``."""
    schemas: dict = {}
    for model in EVENT_TYPES.values():
        schema = model.model_json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return dict(sorted(schemas.items()))


def _message(model: type[Event], topic: TopicSpec) -> dict:
    event_type = model.model_fields["event_type"].default
    return {
        "name": event_type,
        "title": event_type,
        "summary": (model.__doc__ or "").strip().splitlines()[0],
        "contentType": "application/json",
        "payload": {"$ref": _REF.format(model=model.__name__)},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": f"The event's {topic.key}."},
                "bindingVersion": _KAFKA_BINDING,
            }
        },
    }


def _channel_id(topic: TopicSpec) -> str:
    base, _, version = topic.name.replace("{centre}", "centre").rpartition(".")
    return _camel(base) + version.upper()


def _channel(topic: TopicSpec, centre_slugs: list[str]) -> dict:
    channel: dict = {
        "address": topic.name,
        "title": topic.name,
        "description": topic.description
        + (" Holds personal data: bounded retention (default 14 days)." if topic.personal_data else ""),
        "messages": {
            _camel(model.model_fields["event_type"].default): {
                "$ref": f"#/components/messages/{_camel(model.model_fields['event_type'].default)}"
            }
            for model in topic.messages
        },
    }
    if topic is CENTRE_REFERRALS:
        channel["parameters"] = {
            "centre": {"enum": centre_slugs, "description": "Centre slug from the centre registry."}
        }
    return channel


def _operations(topic: TopicSpec) -> dict:
    channel_id = _channel_id(topic)
    return {
        f"receive{channel_id[0].upper()}{channel_id[1:]}": {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"Consume {topic.name}.",
            "messages": [
                {"$ref": f"#/channels/{channel_id}/messages/{message_id}"}
                for message_id in _channel(topic, [])["messages"]
            ],
        }
    }


def asyncapi_document(centre_slugs: list[str], version: str) -> dict:
    """The AsyncAPI 3 document of every topic; ``centre_slugs`` name the centre topics."""
    messages = {}
    for topic in ALL_TOPICS:
        for model in topic.messages:
            messages[_camel(model.model_fields["event_type"].default)] = _message(model, topic)
    operations: dict = {}
    for topic in ALL_TOPICS:
        operations.update(_operations(topic))
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "henvis",
            "version": version,
            "description": "Event contract of the henvis referral pipeline (police consent → rusmiddelcenter → statistics).",
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "The Kafka cluster of the deployment (the local broker in the demo).",
            }
        },
        "channels": {_channel_id(topic): _channel(topic, centre_slugs) for topic in ALL_TOPICS},
        "operations": operations,
        "components": {"messages": messages, "schemas": _components_schemas()},
    }


def _schema_path(model: type[Event]) -> Path:
    """``json/<event_type>.v<schema_version>.schema.json``: what police send is v1, what a topic carries
    may be v2 of the same event."""
    return Path("json") / f"{model.model_fields['event_type'].default}.v{_version(model)}.schema.json"


def render(centre_slugs: list[str], version: str) -> dict[Path, str]:
    """Every generated file, by its path under the output folder, with its text."""
    files = {
        _schema_path(model): json.dumps(event_json_schema(model), indent=2, ensure_ascii=False) + "\n"
        for model in (*POLICE_EVENTS, *EVENT_TYPES.values())
    }
    files[Path("asyncapi.yaml")] = "# Generated by `henvis schemas export`; do not edit.\n" + yaml.safe_dump(
        asyncapi_document(centre_slugs, version), sort_keys=False, allow_unicode=True, width=120
    )
    return files
