"""The pilot's planned outcomes (2021–22, recorded today) all pass the centre's state machine,
twice (a rerun is harmless), and give the status report's counts."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from henvis.auth import hash_token
from henvis.registry import load_registry
from henvis.schemas.events import ConsentGiven, ReferralIssued, referral_id_for
from henvis.services.centre import store_intake
from henvis.services.centre.api import build_app
from henvis_dev.pilot import generate_pilot
from tests.centre_fakes import KEYS, centre_settings, sealed_personal


@pytest.mark.slow
def test_pilot_outcomes_replay_through_the_api_without_refusals(tmp_path):
    registry = load_registry()
    clients = [
        {"name": f"case-{slug}", "role": f"centre:{slug}", "token_sha256": hash_token(f"tok-{slug}")}
        for slug in registry.slugs
    ]
    app = build_app(
        centre_settings(f"sqlite:///{tmp_path / 'centre.db'}", centres=None, api_clients=json.dumps(clients)),
        keys=KEYS,
    )
    engine = app.state.centre.engine
    plan = generate_pilot()
    issued_now = datetime.now(UTC)
    centre_of = {}
    for decision in plan.decisions:
        if not isinstance(decision, ConsentGiven):
            continue
        centre = registry.for_municipality(decision.municipality_code)
        referral_id = referral_id_for(decision.event_id)
        centre_of[referral_id] = centre.slug
        event = ReferralIssued(
            event_id=referral_id,
            occurred_at=issued_now,
            referral_id=referral_id,
            consent_event_id=decision.event_id,
            centre=centre.slug,
            routed_by="residence",
            offence=decision.offence,
            charged_on=decision.charged_on,
            municipality_code=decision.municipality_code,
            personal=sealed_personal(referral_id, centre.slug, decision.case_ref, decision.person),
            contact_due_by=centre.contact_due_by(decision.occurred_at),
            treatment_due_by=centre.treatment_due_by(decision.occurred_at),
            issued_at=issued_now,
        )
        assert store_intake.ingest_issued(engine, event, centre.slug) == "stored"

    statuses: dict[int, int] = {}
    with TestClient(app, base_url="http://localhost") as client:
        for _ in range(2):  # the second pass is a rerun: every answer must be an idempotent 200
            for referral_id, steps in plan.outcomes.items():
                for index, (outcome, occurred_at) in enumerate(steps):
                    answer = client.post(
                        f"/v1/referrals/{referral_id}/outcomes",
                        json={
                            "outcome": outcome.value,
                            "occurred_at": occurred_at.isoformat(),
                            "event_id": str(plan.outcome_event_id(referral_id, index)),
                        },
                        headers={"Authorization": f"Bearer tok-{centre_of[referral_id]}"},
                    )
                    assert answer.status_code in (200, 201), answer.json()
                    statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
    recorded = sum(len(steps) for steps in plan.outcomes.values())
    assert statuses == {201: recorded, 200: recorded}

    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT outcome, COUNT(DISTINCT referral_id) FROM outcomes GROUP BY outcome")).all()
    referrals_with = dict(rows)
    assert len(centre_of) == 119
    assert referrals_with["first_interview_held"] == 80  # 80 / 119 = 67 %
    assert referrals_with["follow_up_accepted"] == 38  # 38 / 119 = 32 %
    engine.dispose()
