"""The generated contract (JSON Schema, AsyncAPI) is current and valid."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from henvis.contract import contract_files, stale_files
from henvis.schemas.events import EVENT_TYPES
from henvis.schemas.topics import ALL_TOPICS
from tests import examples

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "schemas" / "generated"
ASYNCAPI_SPEC = (
    ROOT / "tools" / "asyncapi" / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0-without-$id.json"
)


def test_checked_in_files_are_current():
    assert stale_files(GENERATED) == []


def test_a_changed_model_makes_the_files_stale(tmp_path):
    for relative, text in contract_files().items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text.replace("drink_driving", "drunk_driving"), encoding="utf-8")
    assert stale_files(tmp_path)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_json_schema_accepts_the_examples_and_refuses_unknown_fields(event_type):
    event = examples.example_event(event_type)
    path = GENERATED / "json" / f"{event_type}.v{event.schema_version}.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    example = json.loads(event.to_bytes())
    validator.validate(example)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**example, "surprise": 1})


@pytest.fixture(scope="module")
def asyncapi_spec() -> dict:
    if not ASYNCAPI_SPEC.exists():
        message = "AsyncAPI spec schema missing: run `npm ci --prefix tools/asyncapi` (make test does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return json.loads(ASYNCAPI_SPEC.read_text(encoding="utf-8"))


def test_asyncapi_document_is_valid_asyncapi_3(asyncapi_spec):
    document = yaml.safe_load((GENERATED / "asyncapi.yaml").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator(asyncapi_spec).validate(document)


def test_the_validator_would_catch_a_broken_document(asyncapi_spec):
    broken = copy.deepcopy(yaml.safe_load(contract_files()[Path("asyncapi.yaml")]))
    broken["channels"]["consentDecisionsV2"]["address"] = 42
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(asyncapi_spec).validate(broken)


def test_asyncapi_describes_every_topic_its_key_and_messages():
    document = yaml.safe_load(contract_files()[Path("asyncapi.yaml")])
    addresses = {channel["address"]: channel for channel in document["channels"].values()}
    for topic in ALL_TOPICS:
        channel = addresses[topic.name]
        assert len(channel["messages"]) == len(topic.messages)
    messages = document["components"]["messages"]
    assert {message["name"] for message in messages.values()} == set(EVENT_TYPES)
    assert all("key" in message["bindings"]["kafka"] for message in messages.values())
    assert addresses["referrals.{centre}.v2"]["parameters"]["centre"]["enum"][0] == "herning"
