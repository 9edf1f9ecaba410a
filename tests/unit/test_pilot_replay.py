"""The replay driver speaks the consent and centre APIs' protocol: every decision and
withdrawal posted once as the police, outcomes only after the referral reached its centre,
with that centre's token and deterministic event ids; clear errors when the pipeline refuses
or does not deliver. (The real services are driven by the full-pipeline test and `henvis demo`.)"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict

import httpx
import pytest

from henvis.registry import load_registry
from henvis.schemas.events import referral_id_for
from henvis_dev.pilot import ReplayError, generate_pilot, replay

POLICE = "police-token"
REFERRAL_PATH = re.compile(r"^/v1/referrals/([0-9a-f-]{36})(/outcomes)?$")


class FakePipeline:
    """Stands in for the consent API and the centre API over HTTP, recording what it was sent.
    A referral becomes visible at its centre only after a few lookups (delivery takes time)."""

    def __init__(
        self, plan, lookups_before_delivery: int = 2, never_deliver: bool = False, refuse_decisions: bool = False
    ):
        registry = load_registry()
        self.centre_of = {
            str(referral_id_for(decision.event_id)): registry.for_municipality(decision.municipality_code).slug
            for decision in plan.accepted
        }
        self.tokens = {slug: f"token-{slug}" for slug in registry.slugs}
        self.decisions: list[dict] = []
        self.withdrawals: list[dict] = []
        self.outcomes: dict[str, list[dict]] = defaultdict(list)
        self.lookups: Counter = Counter()
        self.lookups_before_delivery = lookups_before_delivery
        self.never_deliver = never_deliver
        self.refuse_decisions = refuse_decisions

    def handler(self, request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if request.url.host == "consent":
            if token != POLICE:
                return httpx.Response(401)
            body = json.loads(request.content)
            if request.url.path == "/v1/decisions":
                if self.refuse_decisions:
                    return httpx.Response(422, json={"detail": "bad", "errors": [{"field": "offence"}]})
                self.decisions.append(body)
                return httpx.Response(202, json={"event_id": body["event_id"]})
            if request.url.path == "/v1/withdrawals":
                self.withdrawals.append(body)
                return httpx.Response(202, json={"event_id": body["event_id"]})
            return httpx.Response(404)
        match = REFERRAL_PATH.match(request.url.path)
        referral_id = match.group(1)
        centre = self.centre_of.get(referral_id)
        if centre is None or token != self.tokens[centre]:
            return httpx.Response(404)  # a centre never sees another centre's referral
        if request.method == "GET":
            self.lookups[referral_id] += 1
            if self.never_deliver or self.lookups[referral_id] <= self.lookups_before_delivery:
                return httpx.Response(404)
            return httpx.Response(200, json={"referral_id": referral_id})
        if self.lookups[referral_id] <= self.lookups_before_delivery:
            return httpx.Response(404)  # an outcome for a referral the centre does not have yet
        body = json.loads(request.content)
        self.outcomes[referral_id].append(body)
        return httpx.Response(201, json=body)


def run(plan, fake, **kwargs):
    stages = []
    summary = replay(
        plan,
        consent_url="http://consent",
        consent_token=POLICE,
        centre_url="http://centre",
        centre_tokens=fake.tokens,
        progress=lambda stage, done, total: stages.append((stage, done, total)),
        client=httpx.Client(transport=httpx.MockTransport(fake.handler)),
        **kwargs,
    )
    return summary, stages


def test_replay_posts_everything_once_and_outcomes_after_delivery(monkeypatch):
    monkeypatch.setattr("henvis_dev.pilot.time.sleep", lambda seconds: None)  # polling pace is not under test
    plan = generate_pilot()
    fake = FakePipeline(plan)
    summary, stages = run(plan, fake)
    assert summary["accepted"] == 119 and summary["first_interviews"] == 80 and summary["follow_ups"] == 38
    assert len(fake.decisions) == 300 and len({body["event_id"] for body in fake.decisions}) == 300
    assert len(fake.withdrawals) == 4
    withdrawn = {str(referral_id) for referral_id in plan.withdrawn_referral_ids}
    assert not withdrawn & set(fake.outcomes)
    recorded = Counter(body["outcome"] for bodies in fake.outcomes.values() for body in bodies)
    referrals_with = lambda name: sum(any(b["outcome"] == name for b in bodies) for bodies in fake.outcomes.values())  # noqa: E731
    assert referrals_with("first_interview_held") == 80 and referrals_with("follow_up_accepted") == 38
    assert sum(recorded.values()) == summary["outcomes"]
    assert ("centre outcomes", summary["outcomes"], summary["outcomes"]) in stages
    assert ("referrals at the centres", 115, 115) in stages


def test_a_second_replay_sends_the_same_event_ids(monkeypatch):
    monkeypatch.setattr("henvis_dev.pilot.time.sleep", lambda seconds: None)
    plan = generate_pilot()
    first, second = FakePipeline(plan), FakePipeline(plan)
    run(plan, first)
    run(generate_pilot(), second)
    assert [body["event_id"] for body in first.decisions] == [body["event_id"] for body in second.decisions]
    assert {rid: [b["event_id"] for b in bodies] for rid, bodies in first.outcomes.items()} == {
        rid: [b["event_id"] for b in bodies] for rid, bodies in second.outcomes.items()
    }


def test_a_refused_decision_stops_the_replay_with_the_services_reason():
    plan = generate_pilot()
    with pytest.raises(ReplayError, match="decision refused: HTTP 422"):
        run(plan, FakePipeline(plan, refuse_decisions=True))


def test_referrals_that_never_arrive_end_in_a_clear_error(monkeypatch):
    monkeypatch.setattr("henvis_dev.pilot.time.sleep", lambda seconds: None)
    clock = iter(range(0, 10_000, 5))
    monkeypatch.setattr("henvis_dev.pilot.time.monotonic", lambda: next(clock))
    plan = generate_pilot()
    with pytest.raises(ReplayError, match=r"115 of 115 referrals did not reach their centre within 30s"):
        run(plan, FakePipeline(plan, never_deliver=True), delivery_timeout=30)
