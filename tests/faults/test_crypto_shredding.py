"""Crypto-shredding, tried as a new user would, on the running pipeline (issue 13's marker test).

A consent whose name and phone are unique markers reaches the Herning inbox, where the centre
reads them through the normal API; a second one (outside the district) reaches manual
handling, whose role opens it with the key the key store releases.  Both are withdrawn.  Then
the markers are searched for, as bytes, in every file the run left: the broker's raw segment
files of every topic, the consent service's PostgreSQL cluster (data files and WAL), the
centre's and the stats' SQLite files, every log file; and in every row of every consent table.
Every sealed blob on every topic is tried against every data key the key store still holds:
none of the two cases opens.  The figures are printed (``pytest -s``) for the closing note.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer, TopicPartition

from henvis.db import make_engine
from henvis.schemas.events import referral_id_for
from henvis.services.consent.models import data_keys
from henvis.shredding import KeyEncryptionKeys, Undecryptable, WrappedKey, open_personal_data
from tests import examples
from tests.faults.conftest import FaultPipeline
from tests.helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.postgres]


def _markers() -> dict[str, dict[str, str]]:
    """Three cases, each with a name, phone and case number found nowhere else: two to withdraw,
    and a control that stays (its blob must open with its live key: the check can find one)."""
    tag = uuid.uuid4().int
    cases = {}
    for shift, (n, code) in enumerate((("inbox", "657"), ("manual", "751"), ("control", "661"))):
        digits = f"{(tag >> (20 * shift)) % 10**7:07d}"
        cases[n] = {
            "name": "Markørsen Qx" + "".join(chr(ord("a") + int(d, 16)) for d in uuid.uuid4().hex[:12]),
            "phone": f"2{digits}",
            "case_ref": f"4100-{uuid.uuid4().hex[:10]}",
            "municipality_code": code,
        }
    return cases


def _needles(case: dict[str, str]) -> list[bytes]:
    """What a copy of the case would show.  The phone as stored (+45...): its eight digits alone
    could occur by chance among the many numbers of a large log."""
    name_tail = case["name"].split(" ", 1)[1]  # ASCII, so it looks the same in every encoding
    return [name_tail.encode(), ("+45" + case["phone"]).encode(), case["case_ref"].encode()]


def _bearer(pipeline: FaultPipeline, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {pipeline.token(role)}"}


def _submit(pipeline: FaultPipeline, case: dict[str, str]) -> str:
    body = examples.consent_given(
        case_ref=case["case_ref"],
        municipality_code=case["municipality_code"],
        occurred_at=datetime.now(UTC).isoformat(),
        charged_on=datetime.now(UTC).date().isoformat(),
        person={"full_name": case["name"], "phone": case["phone"]},
    )
    answer = pipeline.post_decision(json.dumps(body).encode())
    assert answer.status_code == 202, answer.text
    return str(referral_id_for(uuid.UUID(body["event_id"])))


def _withdraw(pipeline: FaultPipeline, case: dict[str, str]) -> None:
    answer = httpx.post(
        f"{pipeline.url('consent')}/v1/withdrawals",
        json=examples.consent_withdrawn(case_ref=case["case_ref"], occurred_at=datetime.now(UTC).isoformat()),
        headers=_bearer(pipeline, "police"),
        timeout=10,
    )
    assert answer.status_code == 202, answer.text


def _data_key(pipeline: FaultPipeline, role: str, referral_id: str) -> httpx.Response:
    return httpx.get(
        f"{pipeline.url('consent')}/v1/data-keys/{referral_id}", headers=_bearer(pipeline, role), timeout=10
    )


def _every_message(bootstrap: str) -> dict[str, list[bytes]]:
    """Every message value of every topic, aborted transactions included (read_uncommitted)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        found: dict[str, list[bytes]] = {}
        for topic in sorted(consumer.topics()):
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            end = consumer.end_offsets(partitions)
            values: list[bytes] = []
            while any(consumer.position(tp) < end[tp] for tp in partitions):
                for records in consumer.poll(timeout_ms=500).values():
                    values.extend(record.value for record in records if record.value is not None)
            found[topic] = values
        return found
    finally:
        consumer.close()


def _sealed_blobs(values: list[bytes]) -> list[tuple[uuid.UUID | None, str]]:
    """(referral id, blob) of every ``personal`` field in JSON messages."""
    blobs = []
    for value in values:
        try:
            message = json.loads(value)
        except ValueError:
            continue
        if isinstance(message, dict) and isinstance(message.get("personal"), str):
            referral = message.get("referral_id")
            if referral is None and message.get("event_type") == "consent.given":  # its referral's id derives
                referral = str(referral_id_for(uuid.UUID(message["event_id"])))
            blobs.append((uuid.UUID(referral) if referral else None, message["personal"]))
    return blobs


def _live_keys(pipeline: FaultPipeline) -> dict[str, bytes]:
    """Every data key the key store still holds, unwrapped with the deployment's KEKs."""
    keks = KeyEncryptionKeys.parse(pipeline.env["HENVIS_CONSENT_KEY_ENCRYPTION_KEYS"])
    engine = make_engine(pipeline.consent_database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(data_keys.c.referral_id, data_keys.c.kek_id, data_keys.c.wrapped_key).where(
                    data_keys.c.wrapped_key.is_not(None)
                )
            ).all()
    finally:
        engine.dispose()
    return {
        row.referral_id: keks.unwrap(uuid.UUID(row.referral_id), WrappedKey(row.kek_id, row.wrapped_key))
        for row in rows
    }


def _consent_tables_text(pipeline: FaultPipeline) -> str:
    engine = make_engine(pipeline.consent_database_url)
    try:
        metadata = sa.MetaData()
        metadata.reflect(engine)
        with engine.connect() as conn:
            return "\n".join(
                repr(row) for table in metadata.sorted_tables for row in conn.execute(sa.select(table)).all()
            )
    finally:
        engine.dispose()


def _files_holding(root: Path, needles: list[bytes]) -> tuple[int, int, list[str]]:
    """(files read, bytes read, files holding any needle) under ``root``."""
    files = size = 0
    holding = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError:  # a file removed while walking (a rolled log segment)
            continue
        files, size = files + 1, size + len(data)
        if any(needle in data for needle in needles):
            holding.append(str(path.relative_to(root)))
    return files, size, holding


def test_a_withdrawn_case_leaves_its_markers_nowhere_and_no_blob_of_it_opens(fault_pipeline: FaultPipeline):
    pipeline = fault_pipeline
    cases = _markers()
    referral = {n: _submit(pipeline, case) for n, case in cases.items()}

    # Before withdrawal: the centre reads the contact details through its normal inbox ...
    def shown_to(centre: str, n: str):
        answer = httpx.get(
            f"{pipeline.url('centre')}/v1/referrals/{referral[n]}",
            headers=_bearer(pipeline, f"centre:{centre}"),
            timeout=10,
        )
        return answer.json() if answer.status_code == 200 and answer.json().get("person") else None

    shown = wait_until(lambda: shown_to("herning", "inbox"), timeout=180, message="the marker never reached the inbox")
    wait_until(lambda: shown_to("holstebro", "control"), timeout=180, message="the control never reached its inbox")
    assert (shown["person"]["full_name"], shown["person"]["phone"]) == (
        cases["inbox"]["name"],
        "+45" + cases["inbox"]["phone"],
    )

    # ... and the manual-handling role opens its case with the key the key store releases to it.
    def manual_blob():
        blobs = _sealed_blobs(_every_message(pipeline.bootstrap).get("henvis.manual.v2", []))
        return next((blob for rid, blob in blobs if str(rid) == referral["manual"]), None)

    blob = wait_until(manual_blob, timeout=180, message="the outside-district case never reached manual handling")
    released = _data_key(pipeline, "manual-handling", referral["manual"])
    assert released.status_code == 200
    opened = open_personal_data(base64.b64decode(released.json()["data_key"]), uuid.UUID(referral["manual"]), blob)
    assert cases["manual"]["name"].encode() in opened
    # Another centre asking for Herning's key gets what a key that never existed gets.
    other = _data_key(pipeline, "centre:holstebro", referral["inbox"])
    never = _data_key(pipeline, "centre:holstebro", str(uuid.uuid4()))
    assert (other.status_code, other.json()) == (never.status_code, never.json()) == (404, never.json())

    for n in ("inbox", "manual"):
        _withdraw(pipeline, cases[n])

    def withdrawn_in_the_inbox():
        answer = httpx.get(
            f"{pipeline.url('centre')}/v1/referrals/{referral['inbox']}",
            headers=_bearer(pipeline, "centre:herning"),
            timeout=10,
        )
        return answer.json() if answer.json().get("status") == "withdrawn" else None

    erased = wait_until(withdrawn_in_the_inbox, timeout=180, message="the withdrawal never reached the inbox")
    assert erased["person"] is None  # shown as erased, not as an error
    # After erasure the key store answers its owners exactly as for a key that never existed.
    for role, n in (("centre:herning", "inbox"), ("manual-handling", "manual")):
        gone = _data_key(pipeline, role, referral[n])
        assert (gone.status_code, gone.json()) == (404, never.json())

    # Let every part settle (the acknowledgement is published after the erasure).
    def acknowledged():
        outcomes = _every_message(pipeline.bootstrap).get("referral.outcomes.v1", [])
        return any(referral["inbox"].encode() in v and b"withdrawal_acknowledged" in v for v in outcomes)

    wait_until(acknowledged, timeout=120, message="the withdrawal was never acknowledged")

    needles = [needle for n in ("inbox", "manual") for needle in _needles(cases[n])]
    files, size, holding = _files_holding(pipeline.run_dir, needles)
    assert holding == [], f"markers found in {holding}"
    assert not any(needle.decode() in _consent_tables_text(pipeline) for needle in needles)

    messages = _every_message(pipeline.bootstrap)
    assert not any(needle in value for values in messages.values() for value in values for needle in needles)
    keys = _live_keys(pipeline)
    ours = {uuid.UUID(referral[n]) for n in ("inbox", "manual")}
    control = uuid.UUID(referral["control"])
    control_blobs = [blob for values in messages.values() for rid, blob in _sealed_blobs(values) if rid == control]
    assert control_blobs and all(
        cases["control"]["name"].encode() in open_personal_data(keys[str(control)], control, blob)
        for blob in control_blobs
    )
    blobs = [(rid, blob) for values in messages.values() for rid, blob in _sealed_blobs(values)]
    tried = opened_ours = 0
    for rid, blob in blobs:
        if rid not in ours:
            continue
        for key_owner, key in keys.items():
            tried += 1
            try:
                open_personal_data(key, rid, blob)
            except Undecryptable:
                continue
            opened_ours += 1
            pytest.fail(f"a blob of a withdrawn case opened with the live key of {key_owner}")
    assert opened_ours == 0 and str(referral["inbox"]) not in keys and str(referral["manual"]) not in keys
    ours_on_topics = sum(rid in ours for rid, _ in blobs)
    assert ours_on_topics >= 4  # the two consents, the referral to Herning, the manual case
    print(
        f"\nmarker test: {files} files ({size / 1e6:.1f} MB: segments of {len(messages)} topics, PostgreSQL,"
        f" SQLite, logs) hold no marker; {sum(map(len, messages.values()))} messages, {len(blobs)} sealed blobs"
        f" ({ours_on_topics} of the withdrawn cases) x {len(keys)} live keys = {tried} attempts, 0 opened;"
        f" the control case's {len(control_blobs)} blobs open with its live key"
    )
