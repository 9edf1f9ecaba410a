"""Generated requests against the centre API: never a 5xx, never a contact detail in an error."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from henvis.services.centre import store_intake
from henvis.services.centre.api import build_app
from tests.centre_fakes import KEYS, auth, centre_settings, personal_strings, referral_issued

OPERATIONS = [
    ("/v1/referrals", "GET"),
    ("/v1/referrals/{referral_id}", "GET"),
    ("/v1/referrals/{referral_id}/outcomes", "POST"),
    ("/v1/access-log", "GET"),
]


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=["list", "detail", "outcome", "access-log"])
def test_no_server_errors_and_no_contact_details_outside_the_detail(tmp_path, path, method, mode):
    app = build_app(centre_settings(f"sqlite:///{tmp_path / 'centre.db'}"), keys=KEYS)
    engine = app.state.centre.engine
    known: list[str] = []
    for index in range(3):
        event = referral_issued("herning", person_index=index)
        store_intake.ingest_issued(engine, event, "herning")
        known.append(str(event.referral_id))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    strategy = schema[path][method].as_strategy(generation_mode=mode)
    statuses: set[int] = set()

    @given(
        case=strategy,
        token=st.sampled_from(["tok-herning", "tok-holstebro", "tok-auditor", None]),
        existing=st.sampled_from([None, *known]),
    )
    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case, token, existing):
        if existing and "referral_id" in (case.path_parameters or {}):
            case.path_parameters["referral_id"] = existing
        response = case.call(headers=auth(token) if token else {})
        statuses.add(response.status_code)
        case.validate_response(response, checks=[not_a_server_error], headers=auth(token) if token else {})
        if not (response.status_code == 200 and method == "GET" and path == "/v1/referrals/{referral_id}"):
            assert not any(value in response.text for value in personal_strings()), response.status_code

    try:
        run()
    finally:
        engine.dispose()
    assert statuses and max(statuses) < 500
