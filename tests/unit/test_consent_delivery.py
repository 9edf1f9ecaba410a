"""Pure rules of publishing the outbox: lease plans, settling a round, backlog and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from henvis.services.consent import delivery
from henvis.services.consent.delivery import Outcome

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_a_lease_plan_takes_the_free_rows_for_the_lease_time() -> None:
    rows = [delivery.OutboxRow(1, "a", None, None), delivery.OutboxRow(2, "b", None, None)]
    planned = delivery.plan_lease(rows, {"b"}, "relay-1", NOW, limit=10, lease_seconds=60)
    assert planned == delivery.Lease("relay-1", [1], NOW + timedelta(seconds=60))


def test_a_round_is_settled_row_by_row_and_rows_never_sent_are_given_back() -> None:
    outcomes = [Outcome.ACKED, Outcome.FAILED, Outcome.IN_DOUBT, Outcome.ACKED]
    settled = delivery.settle_round([10, 11, 12, 13, 14, 15], outcomes)
    assert settled == delivery.Settlement(acked=[10, 13], failed=[11], not_sent=[14, 15], in_doubt=[12])
    assert settled.to_release == [11, 14, 15]
    assert settled.unacknowledged == 4


def test_a_fully_acknowledged_round_leaves_nothing_to_give_back() -> None:
    settled = delivery.settle_round([1, 2], [Outcome.ACKED, Outcome.ACKED])
    assert (settled.acked, settled.to_release, settled.unacknowledged) == ([1, 2], [], 0)


def test_backlog_age_is_that_of_the_oldest_row_and_never_negative() -> None:
    assert delivery.backlog_of(0, None, NOW) == delivery.Backlog(0, 0.0)
    assert delivery.backlog_of(3, NOW - timedelta(seconds=30), NOW) == delivery.Backlog(3, 30.0)
    assert delivery.backlog_of(1, NOW + timedelta(seconds=5), NOW) == delivery.Backlog(1, 0.0)


def test_the_retention_cutoff_lies_the_retention_before_now() -> None:
    assert delivery.retention_cutoff(NOW, timedelta(days=365)) == NOW - timedelta(days=365)
