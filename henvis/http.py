"""The HTTP edge shared by every service: errors, limits, auth, health, logs and metrics.

``create_app`` gives a FastAPI app whose failures look the same everywhere:
* 422 with ``{"detail": sentence, "errors": [{"field", "message", "type"}]}`` that never
  echoes a submitted value;
* 413 for a body over the limit, 415 for a JSON endpoint posted something else;
* 401 without or with a wrong credential, 403 with the wrong role;
* 500 only for a bug, with a generic message and a log line without personal data.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import Annotated

import structlog
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import Counter, Histogram
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from henvis.access_tokens import KeysUnavailable, TokenNotForThisApi, TokenRefused
from henvis.auth import ApiClient, ClientRegistry
from henvis.heap import settle_heap
from henvis.metrics import mount_metrics
from henvis.schemas.errors import describe, safe_errors

log = structlog.get_logger("henvis.http")

HTTP_REQUESTS = Counter(
    "henvis_http_requests_total", "HTTP requests answered", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram("henvis_http_request_duration_seconds", "Time to answer an HTTP request", ["service", "route"])


class BodySizeLimit:
    """Refuse bodies over ``max_bytes`` with 413, whether or not Content-Length is honest."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(self.max_bytes)(scope, receive, send)
            return
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(self.max_bytes)(scope, receive, send)
        except BaseExceptionGroup as group:
            # A BaseHTTPMiddleware between here and the endpoint wraps the error in a group.
            if group.subgroup(_BodyTooLarge) is None:
                raise
            await _too_large(self.max_bytes)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class ObserveRequests:
    """Counts, times and logs every request (route template, status, client name; no data),
    under a request id that every log line of the request carries and the response returns
    in ``X-Request-ID``.

    A caller may send its own ``X-Request-ID`` to correlate with its logs; only a UUID is
    taken (anything else could carry a case number into our logs), otherwise one is made.

    A plain ASGI middleware: ``@app.middleware("http")`` (BaseHTTPMiddleware) costs a task,
    a memory stream and an exception group per request, measured as a sizeable share of the
    consent API's CPU per decision (bench/README.md, profiling).
    """

    def __init__(self, app: ASGIApp, service: str):
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0  # not answered yet
        scope.setdefault("state", {})  # request.state below us writes here (client_name)
        request_id = _request_id(scope)

        async def send_noting_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), (b"x-request-id", request_id.encode())]}
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_noting_status)
            except Exception as exc:
                # A bug: answered here rather than by Starlette's outermost error handler,
                # so the answer and the log line carry the request id.
                log.error("request_failed", route=_route_of(scope), error_type=type(exc).__name__)
                if status:
                    raise  # the answer had begun; nothing sensible can follow it
                await _internal_error()(scope, receive, send_noting_status)
            finally:
                self._observe(scope, started, status or 500)

    def _observe(self, scope: Scope, started: float, status: int) -> None:
        elapsed = time.perf_counter() - started
        route = _route_of(scope)
        HTTP_REQUESTS.labels(self.service, scope["method"], route, str(status)).inc()
        HTTP_LATENCY.labels(self.service, route).observe(elapsed)
        state = scope.get("state")
        log.info(
            "http_request",
            method=scope["method"],
            route=route,
            status=status,
            duration_ms=round(elapsed * 1000, 1),
            client=state.get("client_name") if isinstance(state, dict) else getattr(state, "client_name", None),
        )


def _route_of(scope: Scope) -> str:
    """The route template that matched (``/v1/referrals/{referral_id}``), never the raw path."""
    return getattr(scope.get("route"), "path", "unmatched")


def _internal_error() -> JSONResponse:
    return JSONResponse(status_code=500, content={"detail": "Internal error. It has been logged without your data."})


def _request_id(scope: Scope) -> str:
    """The caller's X-Request-ID if it is a UUID, else a new one."""
    offered = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1").strip()
    try:
        return str(uuid.UUID(offered))
    except ValueError:
        return str(uuid.uuid4())


def _too_large(max_bytes: int) -> JSONResponse:
    return JSONResponse(
        status_code=413,
        content={
            "detail": f"The request body is larger than the limit of {max_bytes} bytes.",
            "errors": [{"field": "body", "message": f"must be at most {max_bytes} bytes", "type": "body_too_large"}],
        },
    )


async def require_json(request: Request) -> None:
    """Dependency for JSON endpoints: anything but ``application/json`` is a 415.

    Async only so that FastAPI calls it on the event loop: as a plain ``def`` it cost every
    decision a worker-thread hop (py-spy, bench/README.md, issue 18)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise HTTPException(status_code=415, detail="The body must be JSON (Content-Type: application/json).")


def create_app(
    *,
    service: str,
    title: str,
    version: str,
    description: str = "",
    ready: Callable[[], bool] | None = None,
    max_body_bytes: int = 64 * 1024,
    **fastapi_kwargs,
) -> FastAPI:
    """A FastAPI app with henvis's error format, limits, health, metrics and request log."""
    app = FastAPI(title=title, version=version, description=description, **fastapi_kwargs)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = safe_errors(list(exc.errors()))
        return JSONResponse(status_code=422, content={"detail": describe(errors), "errors": errors})

    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    # Outermost (added last), so a 413 from the size limit is counted and logged as a 413.
    app.add_middleware(ObserveRequests, service=service)

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Dependencies (database) are reachable")
    def readyz() -> JSONResponse:
        try:
            is_ready = ready() if ready else True
        except Exception as exc:  # noqa: BLE001 - any failure to reach a dependency means not ready
            log.warning("not_ready", error_type=type(exc).__name__)
            is_ready = False
        return JSONResponse(
            status_code=200 if is_ready else 503, content={"status": "ready" if is_ready else "unavailable"}
        )

    mount_metrics(app)
    return app


#: The one bearer scheme of every service (one ``HTTPBearer`` in each OpenAPI document).
BEARER_SCHEME = HTTPBearer(
    auto_error=False,
    description=(
        "An OAuth2 access token (JWT) from the deployment's identity provider, client-credentials grant;"
        " or, where the static fallback is on, a per-client token from `henvis token new`."
    ),
)
#: The request's bearer credentials, None without an ``Authorization: Bearer`` header.
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER_SCHEME)]


async def admit_client_on_loop(
    request: Request,
    clients: ClientRegistry,
    credentials: HTTPAuthorizationCredentials | None,
    allowed: Iterable[str] | Callable[[str], bool],
) -> ApiClient:
    """:func:`admit_client` for an ``async`` dependency (the consent API's, kept on the event
    loop for speed): on the loop when the token is checked from memory, in a worker thread
    when checking it may fetch the identity provider's keys, which would otherwise hold
    every other request of the process for up to the fetch timeout."""
    token = credentials.credentials if credentials else None
    if clients.identifies_from_memory(token):
        return admit_client(request, clients, credentials, allowed)
    return await run_in_threadpool(admit_client, request, clients, credentials, allowed)


def admit_client(
    request: Request,
    clients: ClientRegistry,
    credentials: HTTPAuthorizationCredentials | None,
    allowed: Iterable[str] | Callable[[str], bool],
) -> ApiClient:
    """The calling client if one of its roles is allowed.

    401 (``WWW-Authenticate: Bearer error="invalid_token"``) when the token is no valid
    credential: unknown, or an access token that fails a check (the reason is logged, the
    token never); 403 when it is valid but for another role or another henvis API; 503 when
    the identity provider's keys cannot be fetched to check it.

    Services call this from their own dependencies, which find ``clients`` on the app state.
    ``allowed`` is a set of roles, or a predicate on the role (e.g. any ``centre:`` role).
    The client's name (never its token) goes into the request log.
    """
    token = credentials.credentials if credentials else None
    try:
        candidates = clients.identify(token)
    except TokenRefused as refused:
        log.info("bearer_refused", reason=refused.reason)
        challenge = 'Bearer error="invalid_token"' if token else "Bearer"
        raise HTTPException(
            status_code=401, detail="A valid bearer token is required.", headers={"WWW-Authenticate": challenge}
        ) from None
    except TokenNotForThisApi:
        log.info("bearer_forbidden", reason="access token for another henvis API")
        raise HTTPException(status_code=403, detail="Your access token is for another henvis API.") from None
    except KeysUnavailable:
        raise HTTPException(
            status_code=503,
            detail="Access tokens cannot be checked right now (the identity provider is unreachable).",
            headers={"Retry-After": "10"},
        ) from None
    request.state.client_name = candidates[0].name
    for client in candidates:
        if allowed(client.role) if callable(allowed) else client.role in frozenset(allowed):
            return client
    log.info("bearer_forbidden", reason="role not allowed here", roles=[client.role for client in candidates])
    raise HTTPException(status_code=403, detail="Your credential's role may not use this endpoint.")


def serve(app: FastAPI, host: str, port: int) -> int:
    """Run ``app`` with uvicorn the one henvis way, until SIGTERM/SIGINT.

    ``log_config=None`` keeps the JSON logging of :mod:`henvis.logging` (uvicorn must not
    install its own handlers); no access log, because :func:`create_app` logs every request
    by route template, never by raw path or query; no proxy headers, so a client cannot
    claim another address with ``X-Forwarded-For``.  The app is built by now, so the heap is
    settled (:mod:`henvis.heap`) before the first request.
    """
    import uvicorn

    settle_heap()
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, proxy_headers=False)
    return 0
