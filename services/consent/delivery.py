"""Pure rules of publishing the outbox: leasing, settling a round, backlog, retention, backoff.

No I/O here: the outbox store (``outbox_store.py``) and the relay (``relay.py``) call these
functions with what they read, so every rule is testable without a database or a broker.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

# ---------------------------------------------------------------------------- leasing


@dataclass(frozen=True)
class OutboxRow:
    """An unsent outbox row as the relay sees it when choosing what to lease."""

    id: int
    key: str  # the Kafka key (case_ref): rows with the same key must go out in id order
    lease_owner: str | None
    lease_until: datetime | None


def choose_lease(rows: Sequence[OutboxRow], now: datetime, limit: int, leased_keys: Iterable[str] = ()) -> list[int]:
    """Ids of unsent rows a relay may lease now, in outbox order.

    ``rows`` are the oldest unsent rows in id order. A row under an unexpired lease blocks
    every later row with the same key, so two relays never publish one case out of order;
    rows of other cases are free to take. This holds for the relay's own leases too: rows
    whose delivery is in doubt stay leased until the lease runs out, and are not sent twice.
    ``leased_keys`` are keys known to be under lease beyond the rows given.
    """
    blocked: set[str] = set(leased_keys)
    chosen: list[int] = []
    for row in rows:
        if len(chosen) >= limit:
            break
        leased = row.lease_owner is not None and row.lease_until is not None and row.lease_until > now
        if leased:
            blocked.add(row.key)
            continue
        if row.key in blocked:
            continue
        chosen.append(row.id)
    return chosen


@dataclass(frozen=True)
class Lease:
    """Outbox rows that belong to one relay until ``until``."""

    owner: str
    ids: list[int]
    until: datetime


def plan_lease(
    rows: Sequence[OutboxRow], leased_keys: Iterable[str], owner: str, now: datetime, limit: int, lease_seconds: float
) -> Lease:
    """The lease ``owner`` takes now: the rows ``choose_lease`` allows, for ``lease_seconds``."""
    return Lease(owner, choose_lease(rows, now, limit, leased_keys), now + timedelta(seconds=lease_seconds))


# ---------------------------------------------------------------------------- settling a round


class Outcome(StrEnum):
    """What became of one outbox row handed to the producer."""

    ACKED = "acked"  # the broker acknowledged it: it is never published again
    FAILED = "failed"  # delivery failed: any relay may retry it at once
    IN_DOUBT = "in_doubt"  # no result yet, it may still be delivered: keep the lease, let it expire


@dataclass(frozen=True)
class Settlement:
    """A round's leased rows sorted by what became of them."""

    acked: list[int]
    failed: list[int]
    not_sent: list[int]  # never handed to the producer (sending stopped early)
    in_doubt: list[int]

    @property
    def to_release(self) -> list[int]:
        """Rows to give back now: the failed ones, then those never sent."""
        return self.failed + self.not_sent

    @property
    def unacknowledged(self) -> int:
        """How many rows of the round were not acknowledged, for whatever reason."""
        return len(self.failed) + len(self.not_sent) + len(self.in_doubt)


def settle_round(leased_ids: Sequence[int], outcomes: Sequence[Outcome]) -> Settlement:
    """Sort ``leased_ids`` by ``outcomes``, those of the first rows sent, in lease order.

    Rows beyond ``outcomes`` were never handed to the producer.
    """
    sorted_ids: dict[Outcome, list[int]] = {outcome: [] for outcome in Outcome}
    for row_id, outcome in zip(leased_ids, outcomes, strict=False):
        sorted_ids[outcome].append(row_id)
    return Settlement(
        acked=sorted_ids[Outcome.ACKED],
        failed=sorted_ids[Outcome.FAILED],
        not_sent=list(leased_ids[len(outcomes) :]),
        in_doubt=sorted_ids[Outcome.IN_DOUBT],
    )


# ---------------------------------------------------------------------------- backlog, retention, backoff


@dataclass(frozen=True)
class Backlog:
    """Outbox rows not yet published, and how long the oldest of them has waited."""

    unsent: int
    oldest_age_seconds: float


def backlog_of(unsent: int, oldest_created_at: datetime | None, now: datetime) -> Backlog:
    """The backlog of ``unsent`` rows whose oldest was created at ``oldest_created_at``."""
    if oldest_created_at is None:
        return Backlog(unsent, 0.0)
    return Backlog(unsent, max(0.0, (now - oldest_created_at).total_seconds()))


def retention_cutoff(now: datetime, retention: timedelta) -> datetime:
    """Rows dated before this moment are past ``retention``."""
    return now - retention


def backoff_seconds(failures: int, cap: float, base: float = 0.5) -> float:
    """Exponential backoff after ``failures`` consecutive failures, capped."""
    if failures <= 0:
        return 0.0
    return min(cap, base * 2 ** min(failures - 1, 16))
