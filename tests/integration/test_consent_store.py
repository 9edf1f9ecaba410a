"""Outbox leasing on SQLite and PostgreSQL: replicas share work without sharing a case."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from henvis.schemas.events import parse_decision
from henvis.services.consent import outbox_store, store
from tests import examples
from tests.consent_support import migrated_engine, protection


@pytest.fixture
def engine(database_url: str):
    engine = migrated_engine(database_url)
    yield engine
    engine.dispose()


def _accept(engine, count: int, cases: int) -> list[str]:
    event_ids = []
    for index in range(count):
        event = parse_decision(examples.consent_declined(case_ref=f"case-{index % cases}"))
        store.accept(engine, event, "politi-test", protection())
        event_ids.append(str(event.event_id))
    return event_ids


def test_two_relays_lease_disjoint_rows_and_never_the_same_case(engine) -> None:
    _accept(engine, 40, cases=8)
    first = outbox_store.lease(engine, "relay-1", limit=10, lease_seconds=60)
    second = outbox_store.lease(engine, "relay-2", limit=100, lease_seconds=60)
    assert [row.id for row in first] == sorted(row.id for row in first)
    assert len(first) == 10
    assert not {row.id for row in first} & {row.id for row in second}
    assert not {row.key for row in first} & {row.key for row in second}
    assert len(second) == 40 - 5 * len({row.key for row in first})


def test_concurrent_lease_calls_never_hand_out_a_row_twice(engine) -> None:
    _accept(engine, 60, cases=60)
    leased: dict[str, list[int]] = {}

    def lease(owner: str) -> None:
        rows = []
        for _ in range(10):
            rows += outbox_store.lease(engine, owner, limit=2, lease_seconds=60)
        leased[owner] = [row.id for row in rows]

    threads = [threading.Thread(target=lease, args=(f"relay-{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    all_ids = [row_id for ids in leased.values() for row_id in ids]
    assert len(all_ids) == len(set(all_ids)) == 60


def test_leased_rows_wait_for_their_lease_even_for_the_same_relay(engine) -> None:
    _accept(engine, 2, cases=2)
    assert len(outbox_store.lease(engine, "relay-1", limit=2, lease_seconds=60)) == 2
    assert outbox_store.lease(engine, "relay-1", limit=2, lease_seconds=60) == []


def test_sent_rows_are_not_leased_again_and_released_rows_are(engine) -> None:
    _accept(engine, 6, cases=6)
    rows = outbox_store.lease(engine, "relay-1", limit=6, lease_seconds=60)
    outbox_store.mark_sent(engine, [row.id for row in rows[:4]])
    outbox_store.release(engine, [row.id for row in rows[4:]], "relay-1")
    again = outbox_store.lease(engine, "relay-2", limit=10, lease_seconds=60)
    assert [row.id for row in again] == [row.id for row in rows[4:]]
    assert store.backlog(engine).unsent == 2


def test_a_crashed_relays_rows_are_taken_over_when_its_lease_expires(engine) -> None:
    _accept(engine, 3, cases=1)
    crashed = outbox_store.lease(engine, "relay-1", limit=3, lease_seconds=60)
    assert outbox_store.lease(engine, "relay-2", limit=3, lease_seconds=60) == []
    later = store.utcnow() + timedelta(seconds=61)
    taken_over = outbox_store.lease(engine, "relay-2", limit=3, lease_seconds=60, now=later)
    assert [row.id for row in taken_over] == [row.id for row in crashed]


def test_backlog_reports_count_and_age_of_the_oldest_unsent_row(engine) -> None:
    assert store.backlog(engine).unsent == 0
    assert store.backlog(engine).oldest_age_seconds == 0.0
    _accept(engine, 3, cases=3)
    backlog = store.backlog(engine, now=store.utcnow() + timedelta(seconds=30))
    assert backlog.unsent == 3
    assert 29 <= backlog.oldest_age_seconds <= 120


def test_published_rows_are_pruned_after_the_retention(engine) -> None:
    _accept(engine, 2, cases=2)
    rows = outbox_store.lease(engine, "relay-1", limit=2, lease_seconds=60)
    outbox_store.mark_sent(engine, [rows[0].id])
    assert outbox_store.prune_sent(engine, timedelta(hours=24)) == 0
    assert outbox_store.prune_sent(engine, timedelta(hours=24), now=store.utcnow() + timedelta(hours=25)) == 1
    assert store.backlog(engine).unsent == 1
