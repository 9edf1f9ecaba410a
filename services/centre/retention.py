"""The retention purge: when a closed or withdrawn referral's retention ends, its data key is
destroyed in the consent service's key store, and only then is the inbox's copy erased.

A key store that does not answer leaves the referral for the next round: the row is never
erased while its key may still live (crypto-shredding is the key's death, not the row's).
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy.engine import Engine

from henvis.services.centre import store_intake
from henvis.services.centre.database import utcnow
from henvis.services.centre.key_store import DataKeys, KeyStoreUnavailable

log = structlog.get_logger("henvis.centre.retention")


def purge(engine: Engine, keys: DataKeys, retention_days: int, now: datetime | None = None) -> int:
    """Destroy the key and erase the copy of every referral due (``domain.purge_due``); how many.

    A 404 from the key store means the key is gone already (withdrawn, handed over, expired):
    the copy is erased all the same.  A referral whose key store is unavailable is skipped,
    logged by id and centre only, and comes up again in the next round.
    """
    now = now or utcnow()
    erased = 0
    for referral_id, centre in store_intake.purge_due(engine, retention_days, now):
        try:
            keys.destroy(centre, referral_id)
        except KeyStoreUnavailable:
            log.warning("retention_purge_deferred", referral_id=referral_id, centre=centre)
            continue
        erased += store_intake.erase_for_retention(engine, referral_id, centre, now)
    return erased
