"""The stats routers on an app whose state holds an in-memory store: no SQL, no factory.

The routes get settings, clients and the reader only from ``app.state`` (``deps``), so the
same routers serve figures computed by ``domain.funnel_of`` from hand-made referrals.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from henvis.auth import ApiClient, ClientRegistry, hash_token
from henvis.http import create_app
from henvis.registry import load_registry
from henvis.schemas.events import Decision, Offence
from henvis.services.stats import api_routes, domain, page_routes
from henvis.services.stats.reader import StatsReader
from henvis.services.stats.settings import StatsSettings
from henvis.services.stats.store import Filters

RESEARCHER, POLICE = "researcher-token-for-route-tests", "police-token-for-route-tests"
MAY = date(2021, 5, 12)
JUNE = date(2021, 6, 3)


class InMemoryStore:
    """The reading side of ``StatsStore`` over referral states in memory."""

    def __init__(self, states: list[domain.ReferralState]):
        self.states = states
        self.asked: list[Filters] = []

    def funnels(self, filters: Filters, group_by=None) -> dict[str | None, domain.RawFunnel]:
        self.asked.append(filters)
        key = {
            None: lambda state: None,
            "month": lambda state: state.decided_month,
            "municipality": lambda state: state.municipality_code or "",
        }[group_by]
        groups = defaultdict(list)
        for state in self._matching(filters):
            groups[key(state)].append(state)
        result = {group: domain.funnel_of(states) for group, states in groups.items()}
        if group_by is None:
            result.setdefault(None, domain.RawFunnel())
        return result

    def cube(self) -> dict[tuple[str, str, str], domain.RawFunnel]:
        groups = defaultdict(list)
        for state in self._matching(Filters()):
            key = (state.decided_month, state.municipality_code or "", str(state.offence) if state.offence else "")
            groups[key].append(state)
        return {key: domain.funnel_of(states) for key, states in groups.items()}

    def decision_date_range(self, filters: Filters) -> tuple[date, date] | None:
        days = [state.decided_on for state in self._matching(filters)]
        return (min(days), max(days)) if days else None

    def _matching(self, filters: Filters) -> list[domain.ReferralState]:
        return [
            state
            for state in self.states
            if state.decision is not None
            and (filters.date_from is None or state.decided_on >= filters.date_from)
            and (filters.date_to is None or state.decided_on <= filters.date_to)
            and (filters.municipality is None or state.municipality_code == filters.municipality)
            and (filters.offence is None or state.offence == filters.offence)
        ]


def referral(number: int, decision: Decision, decided_on: date, municipality: str = "657") -> domain.ReferralState:
    return domain.ReferralState(
        referral_id=f"r{number}",
        decision=decision,
        offence=Offence.DRINK_DRIVING,
        municipality_code=municipality,
        centre="herning",
        decided_on=decided_on,
    )


@pytest.fixture
def store() -> InMemoryStore:
    states = [referral(n, Decision.ACCEPTED, MAY) for n in range(12)]
    states += [referral(100 + n, Decision.DECLINED, MAY) for n in range(8)]
    states += [referral(200 + n, Decision.ACCEPTED, JUNE) for n in range(6)]
    return InMemoryStore(states)


@pytest.fixture
def client(store) -> TestClient:
    app: FastAPI = create_app(service="stats", title="stats routes under test", version="test")
    app.state.settings = StatsSettings(database_url="sqlite://")
    app.state.clients = ClientRegistry(
        [
            ApiClient(name="researcher", role="researcher", token_sha256=hash_token(RESEARCHER)),
            ApiClient(name="police", role="police", token_sha256=hash_token(POLICE)),
        ]
    )
    app.state.reader = StatsReader(store, load_registry(), threshold=5)
    app.include_router(api_routes.router)
    app.include_router(page_routes.router)
    with TestClient(app) as test_client:
        yield test_client


def get(client: TestClient, path: str, token: str | None = RESEARCHER, **params):
    return client.get(path, params=params, headers={"Authorization": f"Bearer {token}"} if token else {})


def test_the_funnel_is_the_readers_figures_from_app_state(client):
    body = get(client, "/v1/funnel").json()
    assert (body["offered"], body["accepted"], body["declined"]) == (26, 18, 8)
    assert body["acceptance_percent"] == 69
    assert body["suppression"]["threshold"] == 5


def test_filters_reach_the_store_as_whole_months(client, store):
    body = get(client, "/v1/funnel/monthly", **{"from": "2021-05-17", "to": "2021-06-02"}).json()
    assert store.asked[0] == Filters(date_from=date(2021, 5, 1), date_to=date(2021, 6, 30))
    assert [(row["month"], row["accepted"]) for row in body["rows"]] == [("2021-05", 12), ("2021-06", 6)]


def test_the_csv_has_one_row_per_centre_and_a_total(client):
    response = get(client, "/v1/funnel/by-municipality", format="csv")
    assert response.headers["content-disposition"] == 'attachment; filename="funnel-by-municipality.csv"'
    lines = response.text.strip().splitlines()
    assert len(lines) == 1 + len(load_registry().centres) + 1
    assert lines[-1].startswith("total,,26,18,8,")


def test_a_stranger_is_refused_before_the_store_is_asked(client, store):
    assert get(client, "/v1/funnel", token=None, municipality="999").status_code == 401
    assert get(client, "/v1/funnel", token=POLICE).status_code == 403
    assert get(client, "/", token=None, offence="speeding").status_code == 401
    assert store.asked == []


def test_the_page_draws_the_same_figures(client, store):
    page = get(client, "/", municipality="657")
    assert page.status_code == 200 and page.text.count("<svg") == 2  # Herning's funnel and the trend
    assert all(filters.municipality == "657" for filters in store.asked)
    assert get(client, "/", offence="speeding").status_code == 422
