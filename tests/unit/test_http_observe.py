"""The request log and metrics every HTTP service gets from ``henvis.http.create_app``."""

from __future__ import annotations

import structlog
from fastapi import Depends, Request
from fastapi.testclient import TestClient

from henvis.auth import ApiClient, ClientRegistry, hash_token
from henvis.http import BearerCredentials, admit_client, create_app

TOKEN = "hv_observe-test-token-0123456789"


def make_client() -> TestClient:
    app = create_app(service="observe-test", title="t", version="1", max_body_bytes=1024)
    clients = ClientRegistry([ApiClient(name="police-a", role="police", token_sha256=hash_token(TOKEN))])

    def police(request: Request, credentials: BearerCredentials) -> ApiClient:
        return admit_client(request, clients, credentials, {"police"})

    @app.post("/v1/cases/{case_ref}")
    async def post_case(case_ref: str, request: Request, _client=Depends(police)):
        return {"bytes": len(await request.body())}

    @app.get("/v1/boom")
    def boom():
        raise RuntimeError("a bug")

    return TestClient(app, raise_server_exceptions=False)


def request_log(logs: list[dict]) -> list[tuple]:
    return [(entry["route"], entry["status"], entry["client"]) for entry in logs if entry["event"] == "http_request"]


def test_request_log_names_route_template_status_and_client_never_the_path_values():
    http = make_client()
    with structlog.testing.capture_logs() as logs:
        ok = http.post("/v1/cases/4100-12345-00001-26", content=b"{}", headers={"Authorization": f"Bearer {TOKEN}"})
        unauthenticated = http.post("/v1/cases/4100-12345-00001-26", content=b"{}")
    assert (ok.status_code, unauthenticated.status_code) == (200, 401)
    assert request_log(logs) == [("/v1/cases/{case_ref}", 200, "police-a"), ("/v1/cases/{case_ref}", 401, None)]
    assert "4100-12345" not in repr(logs)


def test_oversized_body_is_logged_and_counted_as_413_and_a_crash_as_500():
    http = make_client()
    with structlog.testing.capture_logs() as logs:
        declared = http.post("/v1/cases/x", content=b"x" * 2000, headers={"Authorization": f"Bearer {TOKEN}"})
        streamed = http.post(
            "/v1/cases/x", content=(b"x" * 600 for _ in range(3)), headers={"Authorization": f"Bearer {TOKEN}"}
        )
        crashed = http.get("/v1/boom")
    assert (declared.status_code, streamed.status_code, crashed.status_code) == (413, 413, 500)
    assert [status for _, status, _ in request_log(logs)] == [413, 413, 500]
    metrics = http.get("/metrics").text
    assert 'service="observe-test"' in metrics and 'status="413"' in metrics


def test_every_log_line_of_a_request_carries_its_request_id_and_the_answer_returns_it():
    import io
    import json

    from henvis.logging import configure_logging

    stream = io.StringIO()
    configure_logging("observe-test", "INFO", stream=stream)
    http = make_client()

    answer = http.post("/v1/cases/x", content=b"{}", headers={"Authorization": f"Bearer {TOKEN}"})
    crashed = http.get("/v1/boom")

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_request = {}
    for line in lines:
        if line["logger"].startswith("henvis"):
            by_request.setdefault(line.get("request_id"), []).append(line["event"])
    assert by_request == {
        answer.headers["X-Request-ID"]: ["http_request"],
        crashed.headers["X-Request-ID"]: ["request_failed", "http_request"],
    }


def test_a_callers_request_id_is_kept_only_if_it_is_a_uuid():
    http = make_client()
    correlation = "0b7f3a52-3c1e-5b8a-8d6e-7a4f2c9e1d35"
    with structlog.testing.capture_logs() as logs:
        kept = http.get("/healthz", headers={"X-Request-ID": correlation})
        # A case number is not an id we may carry into our logs.
        replaced = http.get("/healthz", headers={"X-Request-ID": "4100-12345-00001-26"})
    assert kept.headers["X-Request-ID"] == correlation
    assert replaced.headers["X-Request-ID"] != "4100-12345-00001-26"
    assert "4100-12345" not in repr(logs)
