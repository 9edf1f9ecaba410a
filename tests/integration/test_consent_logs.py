"""The real service as a subprocess: every line it writes is JSON and free of personal data."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests import examples
from tests.consent_support import (
    HENVIS,
    POLICE,
    POLICE_TOKEN,
    REPO,
    SECRET_CASE,
    SECRET_CPR,
    SECRET_EMAIL,
    SECRET_NAME,
    SECRET_PHONE,
    log_lines,
    secret_person,
    secrets,
    service_env,
    start_api,
    stop,
)


def _requests_full_of_personal_data() -> list[tuple[str, dict | bytes, dict]]:
    person = secret_person()
    given = examples.consent_given(case_ref=SECRET_CASE, person=person)
    return [
        ("/v1/decisions", given, POLICE),  # 202
        ("/v1/decisions", given, POLICE),  # 200 replay
        ("/v1/decisions", {**given, "offence": "drug_driving"}, POLICE),  # 409
        ("/v1/decisions", examples.consent_declined(case_ref=SECRET_CASE, person=person), POLICE),  # 422
        ("/v1/decisions", examples.consent_given(person=person | {"phone": f"+46{SECRET_PHONE}"}), POLICE),
        (
            "/v1/decisions",
            examples.consent_given(person=person | {"cpr": SECRET_CPR[:4] + "99" + SECRET_CPR[6:]}),
            POLICE,
        ),
        ("/v1/decisions", examples.consent_given(person=person | {"email": f"{SECRET_NAME}@"}), POLICE),
        ("/v1/decisions", examples.consent_given(person=person, preferred_centre="aarhus"), POLICE),
        ("/v1/decisions", {**given, "event_type": SECRET_NAME}, POLICE),
        ("/v1/decisions", {**given, SECRET_NAME: SECRET_PHONE}, POLICE),
        ("/v1/decisions", given, {"Authorization": f"Bearer {SECRET_PHONE}"}),  # 401
        ("/v1/decisions", f'{{"full_name": "{SECRET_NAME}", "phone": '.encode(), POLICE),  # broken JSON
        ("/v1/withdrawals", examples.consent_withdrawn(case_ref=SECRET_CASE), POLICE),
        ("/v1/withdrawals", {**examples.consent_withdrawn(case_ref=SECRET_CASE), "reason": SECRET_EMAIL}, POLICE),
    ]


@pytest.mark.slow
def test_no_personal_data_in_any_log_line_of_the_service(database_url: str, tmp_path: Path) -> None:
    log_path = tmp_path / "consent-serve.log"
    proc, url = start_api(tmp_path, database_url, log_path)
    statuses = []
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            for path, body, headers in _requests_full_of_personal_data():
                if isinstance(body, bytes):
                    response = client.post(path, content=body, headers={**headers, "Content-Type": "application/json"})
                else:
                    response = client.post(path, json=body, headers=headers)
                statuses.append(response.status_code)
                for secret in secrets():
                    assert secret not in response.text
    finally:
        stop(proc)
    assert statuses[:3] == [202, 200, 409]
    assert set(statuses[3:]) <= {202, 401, 422}
    lines = log_lines(log_path)
    request_lines = [json.loads(line) for line in lines if '"http_request"' in line and '"POST"' in line]
    assert len(request_lines) == len(statuses), "one log line per request"
    for line in lines:
        json.loads(line)  # every line is a JSON object, including uvicorn's own
        for secret in secrets():
            assert secret not in line, f"personal data in the log: {line[:200]}"


def test_submit_reports_every_bad_line_by_number_and_never_the_values(tmp_path: Path) -> None:
    person = secret_person()
    lines = [
        json.dumps(examples.consent_given(case_ref=SECRET_CASE, person=person)),
        json.dumps(examples.consent_declined(case_ref=SECRET_CASE, person=person)),
        f'{{"full_name": "{SECRET_NAME}"',
        "",
        json.dumps(examples.consent_given(person=person | {"phone": f"+46{SECRET_PHONE}"})),
        json.dumps({**examples.consent_withdrawn(case_ref=SECRET_CASE), "event_type": SECRET_NAME}),
        json.dumps(examples.consent_given(person=person, preferred_centre="aarhus")),
    ]
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = subprocess.run(
        [*HENVIS, "consent", "submit", str(batch), "--url", "http://127.0.0.1:9", "--check"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=service_env(tmp_path, "sqlite://"),
    )
    assert result.returncode == 1
    output = result.stdout + result.stderr
    for expected in (
        "line 2: person",
        "line 3: not valid JSON",
        "line 5: person.phone",
        "line 6: event_type",
        "line 7: preferred_centre",
    ):
        assert expected in output
    assert "line 1:" not in output and "line 4:" not in output
    assert "nothing was sent" in output
    for secret in secrets():
        assert secret not in output


@pytest.mark.slow
def test_submit_posts_a_batch_with_progress_and_a_rerun_changes_nothing(database_url: str, tmp_path: Path) -> None:
    given = examples.consent_given()
    events = [given, examples.consent_declined(), examples.consent_withdrawn(case_ref=given["case_ref"])]
    events += [examples.consent_declined(case_ref=f"4100-{n:05d}-00001-26") for n in range(40)]
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join(json.dumps(event) for event in events) + "\n", encoding="utf-8")
    token_file = tmp_path / "token"
    token_file.write_text(POLICE_TOKEN + "\n")
    log_path = tmp_path / "consent-serve.log"
    proc, url = start_api(tmp_path, database_url, log_path)
    try:
        command = [*HENVIS, "consent", "submit", str(batch), "--url", url, "--token-file", str(token_file)]
        env = service_env(tmp_path, database_url)
        first = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
        rerun = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    finally:
        stop(proc)
    assert first.returncode == 0, first.stderr
    assert "accepted 43, already accepted before 0, failed 0" in first.stdout
    assert "sent 43/43" in first.stderr  # the progress display
    assert rerun.returncode == 0, rerun.stderr
    assert "accepted 0, already accepted before 43, failed 0" in rerun.stdout
