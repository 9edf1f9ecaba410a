"""What a centre's case system (JSON API) and a caseworker (web page) do with a referral.

Both read a referral the same way (its contact details opened with the data key the key store
releases to this centre, the look logged in the access log) and record outcomes the same way
(counted in the metrics and logged), so the two entrances cannot drift apart.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from functools import partial

import structlog
from sqlalchemy.engine import Engine

from henvis.services.centre import domain_inbox
from henvis.services.centre.domain_inbox import Referral
from henvis.services.centre.domain_outcomes import Recorded
from henvis.services.centre.key_store import DataKeys
from henvis.services.centre.metrics import OUTCOMES_RECORDED
from henvis.services.centre.store_access_log import log_access
from henvis.services.centre.store_intake import set_aside_undecryptable
from henvis.services.centre.store_outcomes import record_outcome
from henvis.services.centre.store_referrals import get_referral
from henvis.shredding import Undecryptable

# Named as before this module existed, so the log lines (their "logger" field) stay the same.
log = structlog.get_logger("henvis.centre.api")


def reveal(engine: Engine, keys: DataKeys, referral: Referral) -> Referral:
    """``referral`` with its contact details opened, when the key store releases its key.

    A key that is gone (withdrawn, expired, handed to manual handling) leaves them closed: the
    page shows them erased.  Details that do not open under the released key (tampered with,
    truncated, sealed under another key) go to manual handling with the key, reason
    ``undecryptable``, and are shown erased here.  Raises ``KeyStoreUnavailable`` when the key
    store does not answer.
    """
    if referral.sealed is None:
        return referral
    data_key = keys.fetch(referral.centre, referral.referral_id)
    if data_key is None:
        return referral
    try:
        return domain_inbox.opened(referral, data_key)
    except Undecryptable as exc:
        # The reason is a fixed sentence; the blob itself is never logged.
        log.warning(
            "contact_details_undecryptable", referral_id=referral.referral_id, centre=referral.centre, why=str(exc)
        )
        keys.hand_over(referral.centre, referral.referral_id)
        set_aside_undecryptable(engine, referral)
        return replace(referral, sealed=None)


def read_referral(
    engine: Engine, keys: DataKeys, centre: str, referral_id: str, *, actor: str, actor_kind: str
) -> dict:
    """One referral of ``centre`` with its contact details; the look goes in the access log.

    Raises ``store_referrals.NotFound`` when it is not this centre's, ``KeyStoreUnavailable``
    when its contact details cannot be opened now.
    """
    shown = get_referral(engine, centre, referral_id, partial(reveal, engine, keys))
    log_access(
        engine,
        actor=actor,
        actor_kind=actor_kind,
        centre=centre,
        referral_id=referral_id,
        action=domain_inbox.access_action(shown),
    )
    return shown


def record_and_count(
    engine: Engine,
    keys: DataKeys,
    *,
    centre: str,
    referral_id: str,
    outcome: str,
    actor: str,
    actor_kind: str,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
    expected_version: int | None = None,
) -> Recorded:
    """Record an outcome (``store_outcomes.record_outcome``), and count and log it when it is new.

    ``expected_version``: the FHIR Task version a case system's update was made against.
    """
    recorded = record_outcome(
        engine,
        centre=centre,
        referral_id=referral_id,
        outcome=outcome,
        actor=actor,
        actor_kind=actor_kind,
        occurred_at=occurred_at,
        event_id=event_id,
        hand_over=keys.hand_over,
        expected_version=expected_version,
    )
    if recorded.created:
        OUTCOMES_RECORDED.labels(centre, recorded.outcome).inc()
        log.info("outcome_recorded", referral_id=recorded.referral_id, centre=centre, outcome=recorded.outcome)
    return recorded
